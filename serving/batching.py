"""Dynamic batching of concurrent requests, with TF Serving's batching parameters: requests
for the same version, signature and outputs queue up and run as one call of up to
`max_batch_size` examples, after at most `batch_timeout_micros` (at once when no batch is
running, unlike TF Serving, which waits the timeout even when idle); `num_batch_threads`
batches run at once; a full queue answers UNAVAILABLE (503) instead of letting latency grow
without bound.

Every field of BatchingParameters is honoured, as tensorflow_serving/batching/batching_session.cc
honours it:
- allowed_batch_sizes: a batch is padded up to the next allowed size with copies of the first
  row of its last request, and the padding's outputs are dropped;
- enable_large_batch_splitting with max_execution_batch_size: a request bigger than
  max_execution_batch_size (up to max_batch_size) is split, its parts run in batches of at most
  max_execution_batch_size, and its answer is put back together; without splitting,
  max_execution_batch_size has no effect, as in TF Serving;
- pad_variable_length_inputs: requests whose inputs differ in dimensions after the first are
  padded to the largest of the batch with each tensor's first element (without it, such
  requests run one by one instead of failing together as they do in TF Serving)."""
import asyncio
import dataclasses
import time
from concurrent.futures import Executor
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from serving.errors import ServingError

Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1
    allowed_batch_sizes: Tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: Optional[int] = None  # None: max_batch_size
    pad_variable_length_inputs: bool = False

    def __post_init__(self):
        sizes = self.allowed_batch_sizes
        if sizes and self.enable_large_batch_splitting:
            # CreateBasicBatchingSession's checks, with its messages.
            if any(b <= a for a, b in zip(sizes, sizes[1:])):
                raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
            if sizes[-1] > self.max_batch_size:
                raise ValueError(f"Last entry in allowed_batch_sizes must be less than or equal to max_batch_size; "
                                 f"last entry was {sizes[-1]}; expected {self.max_batch_size}")
            if self.execution_limit != sizes[-1]:
                raise ValueError(f"Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; "
                                 f"last entry was {sizes[-1]}; expected {self.execution_limit}")
        elif sizes and sizes[-1] != self.max_batch_size:
            raise ValueError(f"Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                             f"{sizes[-1]}; expected {self.max_batch_size}")
        if self.enable_large_batch_splitting and self.execution_limit > self.max_batch_size:
            raise ValueError(f"max_execution_batch_size ({self.execution_limit}) must not be larger than "
                             f"max_batch_size ({self.max_batch_size})")

    @property
    def execution_limit(self) -> int:
        """The most examples one model call takes."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    @classmethod
    def from_parameters(cls, parameters: dict) -> "BatchingOptions":
        """From serving.model_config.parse_batching_parameters; raises ValueError naming what is wrong."""
        return cls(max_batch_size=int(parameters["max_batch_size"]),
                   batch_timeout_micros=int(parameters["batch_timeout_micros"]),
                   max_enqueued_batches=int(parameters["max_enqueued_batches"]),
                   num_batch_threads=int(parameters["num_batch_threads"]),
                   allowed_batch_sizes=tuple(int(s) for s in parameters["allowed_batch_sizes"]),
                   enable_large_batch_splitting=bool(parameters["enable_large_batch_splitting"]),
                   max_execution_batch_size=int(parameters["max_execution_batch_size"]),
                   pad_variable_length_inputs=bool(parameters["pad_variable_length_inputs"]))


@dataclasses.dataclass
class _Task:
    inputs: Arrays
    size: int
    future: asyncio.Future
    enqueued: float


class Batcher:
    def __init__(self, run: Callable[[Arrays], Arrays], options: BatchingOptions, executor: Executor,
                 on_batch: Callable[[int], None] = lambda size: None):
        self._run, self._options, self._executor, self._on_batch = run, options, executor, on_batch
        self._limit = options.execution_limit
        self._queue: List[_Task] = []
        self._queued_examples = 0
        self._running = 0
        self._timer = None
        self._dispatch_pending = False

    def submit(self, inputs: Arrays) -> asyncio.Future:
        """Queues one request; its future gets the request's own slice of the batch's outputs.
        A request that can't be queued raises ServingError at once."""
        size = _batch_size(inputs)
        limit = self._options.max_batch_size
        if size > limit:
            raise ServingError("INVALID_ARGUMENT", f"Task size {size} is larger than maximum input batch size {limit}")
        if self._queued_examples + size > self._limit * self._options.max_enqueued_batches:
            raise ServingError("UNAVAILABLE",
                               "The batch scheduling queue to which this task was submitted is full")
        loop = asyncio.get_running_loop()
        if size > self._limit:  # only with enable_large_batch_splitting
            parts = [self._enqueue({name: value[start:start + self._limit] for name, value in inputs.items()}, loop)
                     for start in range(0, size, self._limit)]
            return asyncio.ensure_future(_joined(parts))
        return self._enqueue(inputs, loop)

    def _enqueue(self, inputs: Arrays, loop) -> asyncio.Future:
        task = _Task(inputs, _batch_size(inputs), loop.create_future(), time.monotonic())
        self._queue.append(task)
        self._queued_examples += task.size
        if not self._dispatch_pending:
            # After the requests that arrived with this one are queued too: a burst of requests
            # read in one pass of the event loop becomes one batch, not a lone one and the rest.
            self._dispatch_pending = True
            loop.call_soon(self._dispatch)
        return task.future

    def _dispatch(self) -> None:
        self._dispatch_pending = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timeout = self._options.batch_timeout_micros / 1e6
        while self._queue and self._running < self._options.num_batch_threads:
            waited = time.monotonic() - self._queue[0].enqueued
            # With nothing running, waiting for a fuller batch only adds latency: a lone request
            # runs at once. Under load, batches fill while the running ones finish.
            if self._running and self._queued_examples < self._limit and waited < timeout:
                self._timer = asyncio.get_running_loop().call_later(timeout - waited, self._dispatch)
                return
            batch, total = [], 0
            while self._queue and total + self._queue[0].size <= self._limit:
                task = self._queue.pop(0)
                batch.append(task)
                total += task.size
            self._queued_examples -= total
            self._running += 1
            asyncio.ensure_future(self._execute(batch, total))

    async def _execute(self, batch: List[_Task], total: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [t.inputs for t in batch])
            self._on_batch(total)
            for task, result in zip(batch, results):
                if not task.future.done():
                    if isinstance(result, Exception):
                        task.future.set_exception(result)
                    else:
                        task.future.set_result(result)
        except Exception as error:  # the batch's own failure goes to every caller in it
            for task in batch:
                if not task.future.done():
                    task.future.set_exception(error)
        finally:
            self._running -= 1
            self._dispatch()

    def _run_batch(self, inputs: List[Arrays]) -> list:
        """One call for all requests; if the merged call fails (say, one request has a bad
        shape), each request runs alone so only the bad one gets the error."""
        sizes = [_batch_size(item) for item in inputs]
        total = sum(sizes)
        padded = _allowed_size(self._options.allowed_batch_sizes, total)
        try:
            if self._options.pad_variable_length_inputs and len(inputs) > 1:
                inputs = _padded_to_largest(inputs)
            if len(inputs) == 1 and padded == total:
                return [self._run(inputs[0])]  # nothing to split; a failure is this request's own
            merged = {name: np.concatenate([item[name] for item in inputs]
                                           + [inputs[-1][name][:1]] * (padded - total)) for name in inputs[0]}
            outputs = self._run(merged)
            if any(value.ndim == 0 or value.shape[0] != padded for value in outputs.values()):
                raise ValueError("outputs are not batch-major")
        except ServingError as error:
            if len(inputs) == 1 and padded == total:
                return [error]
            return [self._run_alone(item) for item in inputs]
        except ValueError:  # outputs that cannot be split back (or a merge that numpy refuses)
            return [self._run_alone(item) for item in inputs]
        bounds = np.cumsum([0] + sizes)
        return [{name: value[bounds[i]:bounds[i + 1]] for name, value in outputs.items()} for i in range(len(inputs))]

    def _run_alone(self, inputs: Arrays):
        try:
            return self._run(inputs)
        except Exception as error:
            return error


async def _joined(parts: List[asyncio.Future]) -> Arrays:
    """A split request's answer: its parts' outputs in order, concatenated."""
    results = await asyncio.gather(*parts)
    return {name: np.concatenate([result[name] for result in results]) for name in results[0]}


def _allowed_size(allowed: Tuple[int, ...], total: int) -> int:
    """RoundToLowestAllowedBatchSize."""
    return next((size for size in allowed if size >= total), total)


def _padded_to_largest(inputs: List[Arrays]) -> List[Arrays]:
    """Each input padded after its values, in every dimension but the first, to the batch's
    largest size there, with the tensor's first element (batching_util.cc's PadTensor)."""
    padded = [dict(item) for item in inputs]
    for name in inputs[0]:
        arrays = [item[name] for item in inputs]
        if len({a.ndim for a in arrays}) != 1 or arrays[0].ndim < 2:
            continue
        largest = np.max([a.shape[1:] for a in arrays], axis=0)
        for item, array in zip(padded, arrays):
            widths = [(0, 0)] + [(0, int(big - have)) for big, have in zip(largest, array.shape[1:])]
            if any(after for _, after in widths) and array.size:
                item[name] = np.pad(array, widths, constant_values=array.flat[0])
    return padded


def _batch_size(inputs: Arrays) -> int:
    sizes = {value.shape[0] if value.ndim else 1 for value in inputs.values()}
    if len(sizes) != 1:
        raise ServingError("INVALID_ARGUMENT",
                           "Batching requires every input to have the same size in dimension 0; got sizes "
                           f"{sorted(sizes)}")
    return sizes.pop()

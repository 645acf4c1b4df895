"""Dynamic batching of concurrent requests, with TF Serving's batching parameters: requests
for the same version and signature queue up and run as one call of up to `max_batch_size`
examples, after at most `batch_timeout_micros` (at once when no batch is running, unlike TF
Serving, which waits the timeout even when idle); `num_batch_threads` batches run at once; a full
queue answers UNAVAILABLE (503) instead of letting latency grow without bound."""
import asyncio
import dataclasses
import time
from concurrent.futures import Executor
from typing import Callable, Dict, List

import numpy as np

from serving.errors import ServingError

Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1

    @classmethod
    def from_parameters(cls, parameters: dict) -> "BatchingOptions":
        return cls(**{f.name: int(parameters[f.name]) for f in dataclasses.fields(cls) if f.name in parameters})


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
        if self._queued_examples + size > limit * self._options.max_enqueued_batches:
            raise ServingError("UNAVAILABLE",
                               "The batch scheduling queue to which this task was submitted is full")
        loop = asyncio.get_running_loop()
        task = _Task(inputs, size, loop.create_future(), time.monotonic())
        self._queue.append(task)
        self._queued_examples += size
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
            if self._running and self._queued_examples < self._options.max_batch_size and waited < timeout:
                self._timer = asyncio.get_running_loop().call_later(timeout - waited, self._dispatch)
                return
            batch, total = [], 0
            while self._queue and total + self._queue[0].size <= self._options.max_batch_size:
                task = self._queue.pop(0)
                batch.append(task)
                total += task.size
            self._queued_examples -= total
            self._running += 1
            asyncio.ensure_future(self._execute(batch, total))

    async def _execute(self, batch: List[_Task], total: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            if len(batch) == 1:
                results = [await loop.run_in_executor(self._executor, self._run, batch[0].inputs)]
            else:
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
        try:
            merged = {name: np.concatenate([item[name] for item in inputs]) for name in inputs[0]}
            outputs = self._run(merged)
            if any(value.ndim == 0 or value.shape[0] != sum(sizes) for value in outputs.values()):
                raise ValueError("outputs are not batch-major")
        except Exception:
            return [self._run_alone(item) for item in inputs]
        bounds = np.cumsum([0] + sizes)
        return [{name: value[bounds[i]:bounds[i + 1]] for name, value in outputs.items()} for i in range(len(inputs))]

    def _run_alone(self, inputs: Arrays):
        try:
            return self._run(inputs)
        except Exception as error:
            return error


def _batch_size(inputs: Arrays) -> int:
    sizes = {value.shape[0] if value.ndim else 1 for value in inputs.values()}
    if len(sizes) != 1:
        raise ServingError("INVALID_ARGUMENT",
                           "Batching requires every input to have the same size in dimension 0; got sizes "
                           f"{sorted(sizes)}")
    return sizes.pop()

"""What REST and gRPC share: finding the servable and signature a request names, running it
(batched or not) off the event loop, and the classify/regress conventions of TF Serving."""
import asyncio
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

import numpy as np

from serving.batching import Batcher, BatchingOptions
from serving.errors import invalid, ServingError
from serving.metrics import BATCH_SIZE, BATCH_SIZE_BUCKETS, LATENCY_BUCKETS, Metrics, RUNTIME_LATENCY
from serving.registry import ModelRegistry
from serving.servable import DEFAULT_SIGNATURE, Servable, SignatureInfo, string_array


class InferenceService:
    def __init__(self, registry: ModelRegistry, metrics: Metrics, batching: Optional[BatchingOptions] = None,
                 threads: int = 4, request_log=None):
        self.registry, self.metrics, self.request_log = registry, metrics, request_log
        self._batching = batching
        self._executor = ThreadPoolExecutor(max_workers=max(threads, batching.num_batch_threads if batching else 1),
                                            thread_name_prefix="model")
        self._batchers: "weakref.WeakKeyDictionary[object, Dict[str, Batcher]]" = weakref.WeakKeyDictionary()

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> Servable:
        return self.registry.resolve(name, version, label)

    @staticmethod
    def predict_signature(servable: Servable, signature_name: str) -> Tuple[str, SignatureInfo]:
        key = signature_name or DEFAULT_SIGNATURE
        if key not in servable.signatures:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        return key, servable.signatures[key]

    async def run(self, servable: Servable, key: str, inputs: Dict[str, np.ndarray], api: str = "Predict",
                  timeout: Optional[float] = None):
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        if self._batching is None:
            future = loop.run_in_executor(self._executor, servable.run, key, inputs)
        else:
            future = self._batcher(servable, key).submit(inputs)
        outputs = await _within(future, timeout, loop)
        self.metrics.observe(RUNTIME_LATENCY, (time.perf_counter() - started) * 1e6, LATENCY_BUCKETS,
                             model_name=servable.name, API=api, runtime="TF1")
        if self.request_log is not None:
            self.request_log.record(servable, key, inputs, outputs)
        return outputs

    def _batcher(self, servable: Servable, key: str) -> Batcher:
        per_signature = self._batchers.setdefault(servable, {})
        if key not in per_signature:
            name = servable.name
            per_signature[key] = Batcher(
                lambda inputs: servable.run(key, inputs), self._batching, self._executor,
                lambda size: self.metrics.observe(BATCH_SIZE, size, BATCH_SIZE_BUCKETS, model_name=name))
        return per_signature[key]

    async def classify(self, servable: Servable, signature_name: str, examples: List[bytes],
                       timeout: Optional[float] = None) -> List[list]:
        """One list of (label, score) per example; the label is "" when the signature has only scores."""
        key, signature = self.example_signature(servable, signature_name, "classification")
        if not {"classes", "scores"} & set(signature.outputs):
            raise invalid(f"Expected classification signature outputs to contain classes or scores: {key}")
        outputs = await self.run(servable, key, {"inputs": string_array(examples)}, api="Classify", timeout=timeout)
        scores = outputs.get("scores")
        classes = outputs.get("classes")
        count = len(examples)
        scores = None if scores is None else np.asarray(scores).reshape(count, -1)
        classes = None if classes is None else np.asarray(classes).reshape(count, -1)
        width = (scores if scores is not None else classes).shape[1]
        return [[(_text(classes[i, j]) if classes is not None else "",
                  float(scores[i, j]) if scores is not None else 0.0) for j in range(width)] for i in range(count)]

    async def regress(self, servable: Servable, signature_name: str, examples: List[bytes],
                      timeout: Optional[float] = None) -> List[float]:
        key, signature = self.example_signature(servable, signature_name, "regression")
        if list(signature.outputs) != ["outputs"]:
            raise invalid(f"No regression outputs found in SignatureDef: {key}")
        outputs = await self.run(servable, key, {"inputs": string_array(examples)}, api="Regress", timeout=timeout)
        return [float(v) for v in np.asarray(outputs["outputs"]).reshape(len(examples), -1)[:, 0]]

    @staticmethod
    def example_signature(servable: Servable, signature_name: str, kind: str) -> Tuple[str, SignatureInfo]:
        """The signature a classify ("classification") or regress ("regression") request names,
        if it takes serialized tf.Examples as `inputs`."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in servable.signatures:
            raise invalid(f"No signature was found with the name: {key}")
        signature = servable.signatures[key]
        if list(signature.inputs) != ["inputs"] or signature.inputs["inputs"].dtype != "DT_STRING":
            raise invalid(f"No {kind} inputs found in SignatureDef: {key}")
        return key, signature


async def _within(future: asyncio.Future, timeout: Optional[float], loop) -> object:
    """The future's result, or DEADLINE_EXCEEDED after `timeout` seconds: a timer on the future
    itself, cheaper on every request than asyncio.wait_for's extra task."""
    if timeout is None:
        return await future
    expired = []
    timer = loop.call_later(timeout, lambda: expired.append(future.cancel()))
    try:
        return await future
    except asyncio.CancelledError:
        if expired:
            raise ServingError("DEADLINE_EXCEEDED", f"Request timed out after {timeout:g} s") from None
        raise
    finally:
        timer.cancel()


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def serialize_examples(examples: List[dict], context: Optional[dict]) -> List[bytes]:
    """Feature dicts from tensor_json.example_features to serialized tf.Examples; context
    features are merged into every example, as TF Serving does for ExampleListWithContext."""
    from tensorflow.core.example import example_pb2

    serialized = []
    for features in examples:
        example = example_pb2.Example()
        for name, (kind, values) in {**(context or {}), **features}.items():
            feature = example.features.feature[name]
            getattr(feature, f"{kind}_list").value.extend(values)
        serialized.append(example.SerializeToString())
    return serialized


def status_error(error: Exception) -> ServingError:
    return error if isinstance(error, ServingError) else ServingError("INTERNAL", f"{type(error).__name__}: {error}")

"""What REST and gRPC share: TF Serving's Predict, Classify, Regress and MultiInference as
tensorflow_serving/servables/tensorflow/ implements them (predict_util.cc, classifier.cc,
regressor.cc, multi_inference.cc, util.cc): the same checks in the same order with the same
messages, and the model run (batched or not) off the event loop."""
import asyncio
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from serving import request_id
from serving.batching import Batcher, BatchingOptions
from serving.errors import invalid, ServingError
from serving.metrics import (BATCH_SIZE, BATCH_SIZE_BUCKETS, EXAMPLE_COUNT_BUCKETS, EXAMPLE_COUNT_TOTAL,
                             EXAMPLE_COUNTS, LATENCY_BUCKETS, Metrics, RUNTIME_LATENCY)
from serving.registry import ModelRegistry
from serving.servable import (CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, Servable, SignatureInfo,
                              string_array, tf_dtype)
from serving.tensor_json import TYPE_NAMES

CLASSIFY_INPUTS, CLASSIFY_CLASSES, CLASSIFY_SCORES = "inputs", "classes", "scores"
REGRESS_INPUTS, REGRESS_OUTPUTS = "inputs", "outputs"


def shape_text(shape) -> str:
    """TensorShape::DebugString: [2,1]."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def signature_debug_string(servable: Servable, key: str) -> str:
    """SignatureDef::DebugString(), which TF Serving puts in some errors."""
    protos = getattr(servable, "signature_defs", None)
    if protos is not None:
        from google.protobuf import text_format

        return text_format.MessageToString(protos[key])
    return servable.signatures[key].debug_string()


class InferenceService:
    def __init__(self, registry: ModelRegistry, metrics: Metrics, batching: Optional[BatchingOptions] = None,
                 threads: int = 4, request_log=None):
        self.registry, self.metrics, self.request_log = registry, metrics, request_log
        self._batching = batching
        self._executor = ThreadPoolExecutor(max_workers=max(threads, batching.num_batch_threads if batching else 1),
                                            thread_name_prefix="model")
        self._batchers: "weakref.WeakKeyDictionary[object, Dict[tuple, Batcher]]" = weakref.WeakKeyDictionary()

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> Servable:
        return self.registry.resolve(name, version, label)

    # ---------------------------------------------------------------- running a signature

    async def run(self, servable: Servable, key: str, inputs: Dict[str, np.ndarray], api: str = "Predict",
                  timeout: Optional[float] = None, outputs: Optional[Sequence[str]] = None):
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        fetches = tuple(outputs) if outputs is not None else None
        if self._batching is None:
            future = loop.run_in_executor(self._executor, servable.run, key, inputs, fetches)
        else:
            future = self._batcher(servable, key, fetches).submit(inputs)
        result = await _within(future, timeout, loop)
        self.metrics.observe(RUNTIME_LATENCY, (time.perf_counter() - started) * 1e6, LATENCY_BUCKETS,
                             model_name=servable.name, API=api, runtime="TF1")
        if self.request_log is not None:
            self.request_log.record(servable, key, inputs, result, request_id.current.get())
        return result

    def _batcher(self, servable: Servable, key: str, fetches) -> Batcher:
        per_signature = self._batchers.setdefault(servable, {})
        if (key, fetches) not in per_signature:
            name = servable.name
            per_signature[(key, fetches)] = Batcher(
                lambda inputs: servable.run(key, inputs, fetches), self._batching, self._executor,
                lambda size: self.metrics.observe(BATCH_SIZE, size, BATCH_SIZE_BUCKETS, model_name=name))
        return per_signature[(key, fetches)]

    # ---------------------------------------------------------------- Predict (predict_util.cc)

    @staticmethod
    def predict_signature(servable: Servable, signature_name: str) -> Tuple[str, SignatureInfo]:
        """The REST handler's GetInfoMap."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in servable.signatures:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        return key, servable.signatures[key]

    async def predict(self, servable: Servable, signature_name: str, inputs: Dict[str, object],
                      output_filter: Sequence[str] = (), timeout: Optional[float] = None,
                      convert: Optional[Callable[[str, object], np.ndarray]] = None,
                      dtype_of: Optional[Callable[[str], str]] = None) -> Tuple[str, Dict[str, np.ndarray]]:
        """RunPredict: the signature key and the outputs by alias. gRPC passes TensorProtos with
        `convert` (Tensor::FromProto, run where TF Serving runs it) and `dtype_of` (a feed's
        dtype, checked as the session checks its feeds)."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in servable.signatures:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        signature = servable.signatures[key]
        defaults = getattr(servable, "signature_defaults", lambda _: {})(key)
        _verify_inputs_size(signature, inputs, defaults)
        feeds = _input_values(signature, inputs, defaults, convert)
        fetches = _output_aliases(signature, output_filter)
        if dtype_of is not None:
            for index, alias in enumerate(sorted(feeds)):
                want, got = signature.inputs[alias].dtype, dtype_of(alias) if alias in inputs else None
                if got is not None and got != want:
                    raise invalid(f"Expects arg[{index}] to be {TYPE_NAMES.get(want, want)} but "
                                  f"{TYPE_NAMES.get(got, got)} is provided")
        outputs = await self.run(servable, key, feeds, timeout=timeout,
                                 outputs=fetches if output_filter else None)
        return key, {alias: outputs[alias] for alias in fetches}

    # ---------------------------------------------------------------- Classify (classifier.cc)

    @staticmethod
    def classification_signature(servable: Servable, signature_name: str) -> str:
        """GetClassificationSignatureDef."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in servable.signatures:
            raise invalid(f"No signature was found with the name: {key}")
        _check_classification(servable, key)
        return key

    async def classify(self, servable: Servable, signature_name: str, examples: Callable[[], List[bytes]],
                       timeout: Optional[float] = None) -> List[List[Tuple[str, float]]]:
        """One list of (label, score) per example. `examples` is called after the signature checks,
        as TF Serving reads the Input only then."""
        key = self.classification_signature(servable, signature_name)
        serialized = _examples_or_empty(examples)
        outputs = await self.run(servable, key, {CLASSIFY_INPUTS: string_array(serialized)}, api="Classify",
                                 timeout=timeout, outputs=_classification_outputs(servable.signatures[key]))
        return classification_result(outputs, len(serialized))

    # ---------------------------------------------------------------- Regress (regressor.cc)

    @staticmethod
    def regression_signature(servable: Servable, signature_name: str) -> str:
        """GetRegressionSignatureDef."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in servable.signatures:
            raise invalid(f"No signature was found with the name: {key}")
        _check_regression(servable, key)
        return key

    async def regress(self, servable: Servable, signature_name: str, examples: Callable[[], List[bytes]],
                      timeout: Optional[float] = None) -> List[float]:
        key = self.regression_signature(servable, signature_name)
        serialized = _examples_or_empty(examples)
        outputs = await self.run(servable, key, {REGRESS_INPUTS: string_array(serialized)}, api="Regress",
                                 timeout=timeout, outputs=(REGRESS_OUTPUTS,))
        return regression_result(outputs[REGRESS_OUTPUTS], len(serialized))

    # ---------------------------------------------------------------- MultiInference (multi_inference.cc)

    async def multi_inference(self, servable: Servable, tasks: List[Tuple[str, str, str]],
                              examples: Callable[[], List[bytes]]) -> List[Tuple[str, str, object]]:
        """tasks: (model name, signature name, method name). One session run for all tasks;
        results in task order as (method, signature key, classifications or regressions)."""
        model_name, seen, feeds, fetches = "", set(), set(), set()
        for name, signature_name, method in tasks:
            if not name:
                raise invalid("Found ModelSpec with an empty model name.")
            if not model_name:
                model_name = name
            elif model_name != name:
                raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            key = signature_name or DEFAULT_SIGNATURE
            if key in seen:
                raise invalid(f"Duplicate evaluation of signature: {key}")
            seen.add(key)
            if key not in servable.signatures:
                raise invalid(f"Requested signature not found in model graph: {key}")
            signature = servable.signatures[key]
            if method == CLASSIFY_METHOD:
                _check_classification(servable, key)
                wanted = _classification_outputs(signature)
            elif method == REGRESS_METHOD:
                _check_regression(servable, key)
                wanted = (REGRESS_OUTPUTS,)
            else:
                raise ServingError("UNIMPLEMENTED", f"Unsupported signature method_name: {method}")
            feeds.add(signature.inputs[CLASSIFY_INPUTS].name)
            fetches.update(signature.outputs[alias].name for alias in wanted)
        serialized = _examples_or_empty(examples)
        self.metrics.observe(EXAMPLE_COUNTS, len(serialized), EXAMPLE_COUNT_BUCKETS, model=model_name)
        self.metrics.count(EXAMPLE_COUNT_TOTAL, len(serialized), model=model_name)
        tensors = sorted(fetches)
        batch = string_array(serialized)
        loop = asyncio.get_running_loop()
        values = await loop.run_in_executor(self._executor, servable.run_tensors,
                                            {name: batch for name in feeds}, tensors)
        by_tensor = dict(zip(tensors, values))
        results = []
        for _, signature_name, method in tasks:
            key = signature_name or DEFAULT_SIGNATURE
            signature = servable.signatures[key]
            outputs = {alias: by_tensor[info.name] for alias, info in signature.outputs.items()
                       if info.name in by_tensor}
            if method == CLASSIFY_METHOD:
                results.append((method, key, classification_result(outputs, len(serialized))))
            else:
                results.append((method, key, regression_result(outputs[REGRESS_OUTPUTS], len(serialized))))
        return results


def _verify_inputs_size(signature: SignatureInfo, inputs: Dict[str, np.ndarray], defaults: dict) -> None:
    """VerifyRequestInputsSize."""
    if len(inputs) == len(signature.inputs):
        return
    sent, expected = set(inputs), set(signature.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not defaults):
        raise invalid(
            f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
            f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")


def _input_values(signature: SignatureInfo, inputs: Dict[str, object], defaults: dict,
                  convert: Optional[Callable[[str, object], np.ndarray]]) -> Dict[str, np.ndarray]:
    """saved_model::GetInputValues: every signature input from the request or its default."""
    if convert is None and inputs.keys() == signature.inputs.keys():
        return inputs
    feeds, seen = {}, []
    for alias in sorted(signature.inputs):
        if alias in inputs:
            feeds[alias] = convert(alias, inputs[alias]) if convert is not None else inputs[alias]
            seen.append(alias)
        elif alias in defaults:
            feeds[alias] = defaults[alias]
        else:
            raise invalid(f"Signature input alias: {alias}(feed name: {signature.inputs[alias].name}) not found in "
                          f"request and no default value provided. Inputs expected to be in the request "
                          f"{{{','.join(sorted(inputs))}}}, or default input alias set: {','.join(sorted(defaults))}")
    if inputs and len(seen) != len(inputs):
        raise invalid(f"Inputs contains invalid name. Used request inputs: {','.join(seen)}, request input: "
                      f"{','.join(sorted(inputs))}")
    return feeds


def _output_aliases(signature: SignatureInfo, output_filter: Sequence[str]) -> List[str]:
    seen = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                          f"{{{','.join(sorted(signature.outputs))}}}.")
        if alias in seen:
            raise invalid(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter) if output_filter else sorted(signature.outputs)


def _check_classification(servable: Servable, key: str) -> None:
    """PreProcessClassification."""
    signature = servable.signatures[key]
    if len(signature.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise invalid(f"No classification inputs found in SignatureDef: {signature_debug_string(servable, key)}")
    if not {CLASSIFY_CLASSES, CLASSIFY_SCORES} & set(signature.outputs):
        raise invalid('Expected classification signature outputs to contain at least one of "classes" or '
                      f'"scores". Signature was: {signature_debug_string(servable, key)}')


def _classification_outputs(signature: SignatureInfo) -> Tuple[str, ...]:
    return tuple(alias for alias in (CLASSIFY_CLASSES, CLASSIFY_SCORES) if alias in signature.outputs)


def _check_regression(servable: Servable, key: str) -> None:
    """PreProcessRegression."""
    signature = servable.signatures[key]
    if len(signature.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise invalid(f"No regression inputs found in SignatureDef: {signature_debug_string(servable, key)}")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise invalid(f"No regression outputs found in SignatureDef: {signature_debug_string(servable, key)}")


def _examples_or_empty(examples: Callable[[], List[bytes]]) -> List[bytes]:
    serialized = examples()
    if not serialized:
        raise invalid("Input is empty.")
    return serialized


def classification_result(outputs: Dict[str, np.ndarray], count: int) -> List[List[Tuple[str, float]]]:
    """PostProcessClassificationResult."""
    classes, scores = outputs.get(CLASSIFY_CLASSES), outputs.get(CLASSIFY_SCORES)
    for tensor, name, dtype in ((classes, "classes", "DT_STRING"), (scores, "scores", "DT_FLOAT")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise invalid(f"Expected Tensor shape: [batch_size num_classes] but got {shape_text(tensor.shape)}")
        if tf_dtype(tensor) != dtype:
            raise invalid(f"Expected {name} Tensor of {dtype}. Got: {tf_dtype(tensor)}")
        if tensor.shape[0] != count:
            raise invalid(f"Expected {name} output batch size of {count}. Got: {tensor.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid(f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. "
                      f"{scores.shape[1]}")
    width = (classes if classes is not None else scores).shape[1]
    labels = classes.tolist() if classes is not None else None
    values = scores.tolist() if scores is not None else None
    return [[(_label(labels[i][j]) if labels is not None else "", values[i][j] if values is not None else 0.0)
             for j in range(width)] for i in range(count)]


def regression_result(output: np.ndarray, count: int) -> List[float]:
    """PostProcessRegressionResult."""
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise invalid(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                      f"{shape_text(output.shape)}")
    if output.shape[0] != count:
        raise invalid(f"Input batch size did not match output batch size: {count} vs. {output.shape[0]}")
    if tf_dtype(output) != "DT_FLOAT":
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: {tf_dtype(output)}")
    return output.reshape(-1).tolist()


def _label(value) -> str:
    # Labels are bytes; ones that are not UTF-8 go out unchanged over REST (see tensor_json).
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


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


def serialize_examples(examples: List[dict], context: Optional[dict]) -> List[bytes]:
    """Feature dicts from tensor_json.example_request to serialized tf.Examples. With a context,
    each is the context's serialization followed by the example's, as TF Serving builds the
    input of an ExampleListWithContext (protobuf merges them; an example's feature wins)."""
    from tensorflow.core.example import example_pb2

    def serialize(features: dict) -> bytes:
        example = example_pb2.Example()
        for name, (kind, values) in features.items():
            feature = example.features.feature[name]
            if kind is not None:
                getattr(feature, f"{kind}_list").value.extend(values)
        return example.SerializeToString()

    prefix = serialize(context) if context is not None else b""
    return [prefix + serialize(features) for features in examples]


def status_error(error: BaseException) -> ServingError:
    """Anything that is not already a ServingError is the server's fault: INTERNAL, never a 4xx."""
    if isinstance(error, ServingError):
        return error
    return ServingError("INTERNAL", f"{type(error).__name__}: {error}")

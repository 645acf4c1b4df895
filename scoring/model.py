"""The pushed model a scoring job uses, and Beam's RunInference calling its raw-features signature.

Beam's own TensorFlow handlers (apache_beam.ml.inference.tensorflow_inference) load a model with
tf.keras.models.load_model and call it on one stacked tensor; tfx-bsl's RunInference takes only
serialized tf.Examples and answers one PredictionLog proto per example. The export's
`serving_raw` signature takes one tensor per raw feature, so the handler here loads the SavedModel
with tf.saved_model.load (no Keras) and calls that signature on a whole chunk of rows at a time."""
import dataclasses
import json
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from serving import layout
from serving.release_state import STABLE, read_release
from trainer.export import RAW_FEATURES_FILE

SIGNATURE = "serving_raw"


class ScoringError(ValueError):
    """A job that cannot start: the message names the problem and what to do."""


@dataclasses.dataclass(frozen=True)
class PushedModel:
    name: str
    version: int
    path: str
    inputs: List[dict]  # raw_features.json: name, dtype, default


def resolve(serving_dir: str, model_name: str, version: Optional[int] = None) -> PushedModel:
    """The version to score with: `version`, or the one the `stable` label points at, in a serving
    directory on local disk or on a filesystem TensorFlow reaches by URI (gs://...)."""
    base = layout.join(serving_dir, model_name)
    on_disk = layout.saved_model_versions(base)
    if version is None:
        labels = read_release(serving_dir, model_name).labels
        if STABLE not in labels:
            config_path = layout.join(serving_dir, layout.MODELS_CONFIG)
            raise ScoringError(f"no '{STABLE}' label for {model_name} in {config_path}; "
                               f"pass --version (on disk: {on_disk or 'none'})")
        version = labels[STABLE]
    if version not in on_disk:
        raise ScoringError(f"version {version} of {model_name} is not under {base} "
                           f"(on disk: {on_disk or 'none'}); pass --version with one of them")
    path = layout.join(base, str(version))
    try:
        inputs = json.loads(layout.read_text(layout.join(path, RAW_FEATURES_FILE)))
    except (OSError, ValueError) as error:
        raise ScoringError(f"{path}: no readable {RAW_FEATURES_FILE} ({error}); "
                           "score a version exported by the tfxline Trainer") from None
    return PushedModel(model_name, version, path, inputs)


class _Signature:
    """The loaded SavedModel (kept alive: the concrete function does not hold its resources) and
    its raw-features signature."""

    def __init__(self, path: str):
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(path, tags=["serve"])
        self.function = self._loaded.signatures[SIGNATURE]
        self.dtypes = {name: spec.dtype for name, spec in self.function.structured_input_signature[1].items()}

    def __call__(self, columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        tf = self._tf
        outputs = self.function(**{name: tf.constant(columns[name], dtype) for name, dtype in self.dtypes.items()})
        return {name: value.numpy() for name, value in outputs.items()}


class RawFeaturesHandler(ModelHandler):
    """RunInference's model handler. An element is a chunk of rows already in columns
    (scoring.inputs.Chunk), and the model is called on `batch_size` rows at a time. A batch job
    reads chunks of many batches and runs one chunk per call, so Beam's per-element overhead is
    paid once per chunk, not once per row; a stream has one-row chunks that RunInference batches
    within each bundle (up to `max_chunks`)."""

    def __init__(self, model_path: str, batch_size: int, max_chunks: int = 1):
        super().__init__()
        self._model_path, self._batch_size = model_path, batch_size
        self._batching = {"min_batch_size": 1, "max_batch_size": max_chunks}

    def load_model(self) -> _Signature:
        return _Signature(self._model_path)

    def run_inference(self, batch: Sequence[Any], model: _Signature,
                      inference_args: Optional[Dict[str, Any]] = None) -> Iterable[PredictionResult]:
        chunks = [chunk for chunk in batch if chunk.size]
        outputs = {}
        if chunks:
            columns = chunks[0].features if len(chunks) == 1 else {
                name: np.concatenate([chunk.features[name] for chunk in chunks]) for name in chunks[0].features}
            total = sum(chunk.size for chunk in chunks)
            parts = [model({name: value[start:start + self._batch_size] for name, value in columns.items()})
                     for start in range(0, total, self._batch_size)]
            outputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        start = 0
        for chunk in batch:
            end = start + chunk.size
            yield PredictionResult(chunk, {name: value[start:end] for name, value in outputs.items()},
                                   self._model_path)
            start = end

    def batch_elements_kwargs(self) -> Dict[str, float]:
        return dict(self._batching)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(int(sum(np.asarray(v).nbytes for v in chunk.features.values())) for chunk in batch)

    def get_metrics_namespace(self) -> str:
        return "tfxline.score"

"""Exports the trained model with the Transform graph inside, so servers never
re-implement preprocessing. Signatures:
  serving_default     serialized tf.Example -> scores (or predictions)
  serving_raw         one rank-1 tensor per raw feature -> scores (JSON clients, TFLite)
  transform_features  serialized tf.Example -> transformed features (TFMA)
and assets.extra/raw_features.json: the raw inputs with the value used when one is missing."""
import json
import os

import tensorflow as tf

from config import PipelineConfig, names, speedups

SERVING_DEFAULT = "serving_default"
SERVING_RAW = "serving_raw"
TRANSFORM_FEATURES = "transform_features"
RAW_FEATURES_FILE = os.path.join("assets.extra", "raw_features.json")


def _missing_value(spec, feature):
    if isinstance(spec, tf.io.FixedLenFeature) and spec.default_value is not None:
        value = spec.default_value
        value = value.tolist() if hasattr(value, "tolist") else value
        value = value[0] if isinstance(value, (list, tuple)) else value
        return value.decode() if isinstance(value, bytes) else value
    # The column's type comes from the data: a numeric feature's default is 0.0 in the config even
    # where every value in the data is a whole number and the input is int64.
    return int(feature.default) if spec.dtype.is_integer else feature.default


def raw_inputs(config: PipelineConfig, tft_output) -> list:
    """The serving inputs in signature order: name, dtype and missing value."""
    spec = tft_output.raw_feature_spec()
    return [
        {"name": f.name, "dtype": spec[f.name].dtype.name, "default": _missing_value(spec[f.name], f)}
        for f in config.features
    ]


def _as_raw_feature(x, spec):
    """A rank-1 dense input in the form the Transform graph was traced with."""
    if isinstance(spec, tf.io.VarLenFeature):
        rows = tf.range(tf.shape(x, out_type=tf.int64)[0])
        indices = tf.stack([rows, tf.zeros_like(rows)], axis=1)
        return tf.SparseTensor(indices, x, tf.stack([tf.shape(x, out_type=tf.int64)[0], 1]))
    if len(spec.shape) == 1:
        return tf.expand_dims(x, 1)
    return x


def _lookup_tables(model) -> list:
    return [layer.lookup_table for layer in model.layers if hasattr(layer, "lookup_table")]


class _Exporter(tf.Module):
    """What the SavedModel holds: the Transform graph's resources, the model's variables and
    lookup tables, and the signatures. The model is not tracked, and with the tft-tracked-resources
    speed-up neither is TFT's TransformFeaturesLayer (itself a Keras model): tf.saved_model.save
    would trace every Keras layer again for Keras serialization, most of the export's time."""

    def __init__(self, model, tft_output, transform_layer, config: PipelineConfig):
        super().__init__()
        if speedups.active("tft-tracked-resources"):
            # The tables and vocabulary assets of the Transform graph: the same dict the layer
            # tracks to save them (TFT 1.16's TransformFeaturesLayer.__init__).
            self.transform_resources = transform_layer._saved_model_loader_tracked_dict
        else:
            self.transform_layer = transform_layer
        self.model_variables = list(model.variables)
        self.lookup_tables = _lookup_tables(model)
        full_spec = tft_output.raw_feature_spec()
        self._full_spec = full_spec
        self._serving_spec = {name: full_spec[name] for name in config.feature_names}
        output_key = names.output_key(config)
        model_inputs = [names.transformed_name(name) for name in config.feature_names]

        # Closures, not attributes, so that the Keras objects stay untracked.
        def transform(raw):
            return transform_layer(raw)

        def score(raw):
            transformed = transform(raw)
            return {output_key: model({k: transformed[k] for k in model_inputs})}

        self._transform, self._score = transform, score

    def signatures(self) -> dict:
        # No AutoGraph: these functions have no Python control flow on tensors, and
        # transpiling the Keras and Transform code they call would dominate export time.
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
        def serve_examples(examples):
            return self._score(tf.io.parse_example(examples, self._serving_spec))

        raw_signature = {
            name: tf.TensorSpec([None], spec.dtype, name=name) for name, spec in self._serving_spec.items()
        }

        @tf.function(input_signature=[raw_signature], autograph=False)
        def serve_raw(inputs):
            return self._score({name: _as_raw_feature(inputs[name], spec)
                                for name, spec in self._serving_spec.items()})

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
        def transform_features(examples):
            return self._transform(tf.io.parse_example(examples, self._full_spec))

        return {
            SERVING_DEFAULT: serve_examples,
            SERVING_RAW: serve_raw.get_concrete_function(),
            TRANSFORM_FEATURES: transform_features,
        }


def export_model(model, tft_output, transform_layer, config: PipelineConfig, export_dir: str) -> None:
    exporter = _Exporter(model, tft_output, transform_layer, config)
    tf.saved_model.save(exporter, export_dir, signatures=exporter.signatures())
    extra = os.path.join(export_dir, RAW_FEATURES_FILE)
    tf.io.gfile.makedirs(os.path.dirname(extra))
    with tf.io.gfile.GFile(extra, "w") as handle:
        json.dump(raw_inputs(config, tft_output), handle, indent=2)

"""The exported SavedModel of a real Trainer run: signatures, parity between them, assets."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from trainer import export
from tests.helpers import split_examples


@pytest.fixture(scope="module")
def saved_model_dir(tiny_model):
    return tiny_model.saved_model_dir


@pytest.fixture(scope="module")
def loaded(saved_model_dir):
    return tf.saved_model.load(saved_model_dir)


@pytest.fixture(scope="module")
def examples(tiny_model):
    return split_examples(tiny_model.examples_uri, "eval", limit=300)


def _raw_columns(serialized: list, raw_inputs: list) -> dict:
    """The raw-feature tensors a JSON client would send for these examples (defaults where missing)."""
    columns = {item["name"]: [] for item in raw_inputs}
    for record in serialized:
        example = tf.train.Example.FromString(record)
        for item in raw_inputs:
            feature = example.features.feature[item["name"]]
            values = getattr(feature, feature.WhichOneof("kind")).value if feature.WhichOneof("kind") else []
            columns[item["name"]].append(values[0] if len(values) else item["default"])
    return {name: tf.constant(values if raw_inputs[i]["dtype"] != "string" else
                              [v if isinstance(v, bytes) else str(v).encode() for v in values],
                              dtype=raw_inputs[i]["dtype"])
            for i, (name, values) in enumerate(columns.items())}


def test_three_signatures_with_the_documented_inputs(loaded, tiny_model):
    signatures = loaded.signatures
    assert set(signatures) == {export.SERVING_DEFAULT, export.SERVING_RAW, export.TRANSFORM_FEATURES}
    _, default_inputs = signatures[export.SERVING_DEFAULT].structured_input_signature
    assert {name: spec.dtype for name, spec in default_inputs.items()} == {"examples": tf.string}
    _, raw_inputs = signatures[export.SERVING_RAW].structured_input_signature
    assert set(raw_inputs) == set(tiny_model.config.feature_names)
    assert all(spec.shape.as_list() == [None] for spec in raw_inputs.values())
    assert raw_inputs["payment_type"].dtype == tf.string and raw_inputs["fare"].dtype == tf.float32
    assert set(signatures[export.SERVING_DEFAULT].structured_outputs) == {"scores"}


def test_raw_features_asset_lists_inputs_in_order_with_defaults(saved_model_dir, tiny_model):
    with open(os.path.join(saved_model_dir, export.RAW_FEATURES_FILE)) as handle:
        raw_inputs = json.load(handle)
    assert [item["name"] for item in raw_inputs] == tiny_model.config.feature_names
    by_name = {item["name"]: item for item in raw_inputs}
    assert by_name["payment_type"] == {"name": "payment_type", "dtype": "string", "default": ""}
    assert by_name["trip_start_hour"]["dtype"] == "int64"


def test_scores_are_probabilities(loaded, examples):
    scores = loaded.signatures[export.SERVING_DEFAULT](examples=tf.constant(examples))["scores"].numpy()
    assert scores.shape == (len(examples), 1)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.std() > 0.01  # the model discriminates between examples


def test_raw_signature_matches_tf_example_signature(loaded, saved_model_dir, examples):
    with open(os.path.join(saved_model_dir, export.RAW_FEATURES_FILE)) as handle:
        raw_inputs = json.load(handle)
    from_examples = loaded.signatures[export.SERVING_DEFAULT](examples=tf.constant(examples))["scores"]
    from_raw = loaded.signatures[export.SERVING_RAW](**_raw_columns(examples, raw_inputs))["scores"]
    np.testing.assert_allclose(from_raw.numpy(), from_examples.numpy(), atol=1e-6)


def test_unseen_category_and_missing_values_score(loaded, examples):
    example = tf.train.Example.FromString(examples[0])
    example.features.feature["payment_type"].bytes_list.value[:] = [b"Bitcoin"]
    del example.features.feature["company"]
    del example.features.feature["trip_miles"]
    scores = loaded.signatures[export.SERVING_DEFAULT](examples=tf.constant([example.SerializeToString()]))
    assert 0.0 <= float(scores["scores"][0, 0]) <= 1.0


def test_transform_features_gives_the_label_for_tfma(loaded, examples):
    transformed = loaded.signatures[export.TRANSFORM_FEATURES](examples=tf.constant(examples[:20]))
    assert "big_tipper" in transformed and "fare_xf" in transformed
    assert set(np.unique(transformed["big_tipper"].numpy())) <= {0, 1}


def test_raw_signature_converts_to_tflite_builtins_with_the_same_scores(loaded, saved_model_dir, examples):
    """The Transform graph and the model together need no Flex ops, so LiteRT alone runs them."""
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[export.SERVING_RAW])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    runner = Interpreter(model_content=converter.convert()).get_signature_runner(export.SERVING_RAW)
    with open(os.path.join(saved_model_dir, export.RAW_FEATURES_FILE)) as handle:
        raw_inputs = json.load(handle)
    columns = {name: tensor.numpy() for name, tensor in _raw_columns(examples, raw_inputs).items()}
    columns = {name: values.astype(object) if values.dtype.kind in "SO" else values for name, values in columns.items()}
    expected = loaded.signatures[export.SERVING_DEFAULT](examples=tf.constant(examples))["scores"].numpy()
    np.testing.assert_allclose(runner(**columns)["scores"], expected, atol=1e-5)

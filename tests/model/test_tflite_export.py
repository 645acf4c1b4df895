"""TFLite export of a real Trainer's model: conversion, parity, refusal with numbers."""
import json
import os

import pytest

from components.tflite_export import converter, executor, parity
from serving import layout
from tests.helpers import split_examples


@pytest.fixture(scope="module")
def saved_model_dir(tiny_model):
    return tiny_model.saved_model_dir


def _settings(tmp_path, **overrides):
    return {"edge_dir": str(tmp_path / "edge"), "model_name": "taxi", "task": "binary", "output_key": "scores",
            "label_name": "big_tipper", "max_score_diff": 1e-4, "max_metric_drop": 0.005, **overrides}


def test_the_edge_model_is_published_under_the_serving_version(tiny_model):
    version = tiny_model.version
    assert os.path.isfile(os.path.join(tiny_model.serving_base, version, "saved_model.pb"))
    directory = os.path.join(tiny_model.edge_base, version)
    with open(os.path.join(directory, layout.MANIFEST)) as handle:
        content = json.load(handle)
    assert content["version"] == int(version)
    for name, entry in content["files"].items():
        with open(os.path.join(directory, name), "rb") as handle:
            assert layout.sha256(handle.read()) == entry["sha256"]
    metrics = content["metrics"]
    assert metrics["max_score_diff"] <= 1e-4
    assert metrics["saved_model_metric"] - metrics["quantized_metric"] <= 0.005
    assert [item["name"] for item in content["inputs"]] == tiny_model.config.feature_names


def test_a_model_that_misses_the_parity_bound_is_refused_with_numbers(tiny_model, saved_model_dir, tmp_path):
    examples = split_examples(tiny_model.examples_uri, "eval", limit=300)
    refused = r"float TFLite differs from the SavedModel by up to .* \(allowed 1e-12\)"
    with pytest.raises(parity.ParityError, match=refused):
        executor.export(saved_model_dir, examples, "7", _settings(tmp_path, max_score_diff=1e-12))
    assert not (tmp_path / "edge").exists()


def test_quantized_metric_drop_is_checked(tiny_model, saved_model_dir, tmp_path):
    examples = split_examples(tiny_model.examples_uri, "eval", limit=300)
    with pytest.raises(parity.ParityError, match=r"quantized auc .* below the SavedModel's"):
        executor.export(saved_model_dir, examples, "7", _settings(tmp_path, max_metric_drop=-1.0))


def test_rows_with_unseen_categories_and_missing_values_match(tiny_model, saved_model_dir):
    import tensorflow as tf

    records = []
    for record in split_examples(tiny_model.examples_uri, "eval", limit=50):
        example = tf.train.Example.FromString(record)
        example.features.feature["payment_type"].bytes_list.value[:] = [b"Bitcoin"]
        del example.features.feature["company"]
        del example.features.feature["pickup_latitude"]
        records.append(example.SerializeToString())
    with open(os.path.join(saved_model_dir, "assets.extra", "raw_features.json")) as handle:
        raw_inputs = json.load(handle)
    conversion = converter.convert(saved_model_dir)
    report = parity.check(conversion.saved_model, conversion.float_model, conversion.float_model, records,
                          raw_inputs, "scores", "big_tipper", "binary", 1e-4, 1.0)
    assert report.max_score_diff <= 1e-4


def test_both_models_use_builtin_ops_only_and_carry_no_tensor_names(saved_model_dir):
    from tensorflow.lite.tools import flatbuffer_utils

    conversion = converter.convert(saved_model_dir)
    float_model, quantized_model = conversion.float_model, conversion.quantized_model
    # The SavedModel the converter loaded, which the parity check calls.
    assert {"serving_default", "serving_raw", "transform_features"} <= set(conversion.saved_model.signatures)
    for model in (float_model, quantized_model):
        flat = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
        assert [code.customCode for code in flat.operatorCodes if code.customCode] == []  # no Flex, no custom ops
        assert [tensor.name for graph in flat.subgraphs for tensor in graph.tensors if tensor.name] == []
        assert [signature.signatureKey for signature in flat.signatureDefs] == [b"serving_raw"]
    assert len(quantized_model) < len(float_model)


def test_parity_auc_matches_scikit_learn_with_ties():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 500)
    for scores in (rng.random(500), np.round(rng.random(500), 1), labels * 0.5 + rng.random(500) * 0.6):
        assert parity.binary_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert parity.binary_auc([0, 1, 1], [0.2, 0.2, 0.9]) == 0.75
    with pytest.raises(ValueError, match="both classes.*3 positive, 0 negative"):
        parity.binary_auc([1, 1, 1], [0.1, 0.2, 0.3])

"""preprocessing_fn run through tf.Transform on tiny data, against hand-computed values."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from config import parse_config
from pipeline.pipeline import TRANSFORM_AS_TF1_GRAPH
from trainer import preprocessing

RAW_SPEC = {
    "miles": tf.io.VarLenFeature(tf.float32),
    "hour": tf.io.VarLenFeature(tf.int64),
    "lat": tf.io.VarLenFeature(tf.float32),
    "payment": tf.io.VarLenFeature(tf.string),
    "fare": tf.io.VarLenFeature(tf.float32),
    "tips": tf.io.VarLenFeature(tf.float32),
}
ROWS = [
    {"miles": [1.0], "hour": [0], "lat": [1.0], "payment": [b"Cash"], "fare": [2.0], "tips": [1.0]},
    {"miles": [2.0], "hour": [2], "lat": [2.0], "payment": [b"Cash"], "fare": [2.0], "tips": [0.0]},
    {"miles": [3.0], "hour": [5], "lat": [3.0], "payment": [b"Card"], "fare": [10.0], "tips": [5.0]},
    {"miles": [], "hour": [-1], "lat": [4.0], "payment": [], "fare": [], "tips": [1.0]},
]


def _config(**label):
    return parse_config({
        "name": "tiny", "task": "binary",
        "data": {"path": "/unused"},
        "schema": {"source": "inferred"},
        "features": [
            {"name": "miles", "kind": "numeric"},
            {"name": "hour", "kind": "categorical_int", "num_values": 3},
            {"name": "lat", "kind": "bucketized", "buckets": 2},
            {"name": "payment", "kind": "categorical_string"},
            {"name": "fare", "kind": "numeric", "default": 0.0},
        ],
        "label": {"name": "big_tipper", "column": "tips", "rule": "fraction_of_column_above",
                  "of_column": "fare", "threshold": 0.2, **label},
        "evaluation": {"thresholds": {"auc": 0.5}},
    })


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    config = _config()
    temp = tmp_path_factory.mktemp("tft")
    custom_config = {"config": config.to_custom_config()}
    metadata = dataset_metadata.DatasetMetadata.from_feature_spec(RAW_SPEC)
    with tft_beam.Context(temp_dir=str(temp / "tmp"), force_tf_compat_v1=TRANSFORM_AS_TF1_GRAPH):
        (data, _), transform_fn = (ROWS, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config), output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(str(temp / "transform_fn"))
    return data, tft.TFTransformOutput(str(temp / "transform_fn"))


def test_numeric_is_z_scored_with_the_default_for_missing(transformed):
    data, _ = transformed
    values = np.array([1.0, 2.0, 3.0, 0.0])  # the missing value takes the default, 0
    expected = (values - values.mean()) / values.std()
    np.testing.assert_allclose([row["miles_xf"] for row in data], expected, rtol=1e-5)


def test_categorical_int_out_of_range_goes_to_one_extra_bucket(transformed):
    data, _ = transformed
    assert [row["hour_xf"] for row in data] == [0, 2, 3, 3]


def test_bucketized_splits_at_the_median(transformed):
    data, _ = transformed
    assert [row["lat_xf"] for row in data] == [0, 0, 1, 1]


def test_strings_pass_through_and_the_vocabulary_is_computed(transformed):
    data, output = transformed
    assert [list(row["payment_xf"]) for row in data] == [[b"Cash"], [b"Cash"], [b"Card"], []]
    assert output.vocabulary_by_name("payment_vocab") == [b"Cash", b"Card"]


def test_label_fraction_rule_with_missing_denominator(transformed):
    data, _ = transformed
    # 1 > 0.4, 0 > 0.4, 5 > 2, and no fare means not a big tipper.
    assert [row["big_tipper"] for row in data] == [1, 0, 1, 0]


def test_bucketize_counts_boundaries_at_or_below():
    ids = preprocessing.bucketize(tf.constant([0.5, 1.0, 1.5, 2.0, 3.0]), tf.constant([[1.0, 2.0]]))
    assert ids.numpy().tolist() == [0, 1, 1, 2, 2]


def test_class_labels_map_to_ids_and_unknown_to_minus_one():
    config = parse_config({
        "name": "tiny", "task": "multiclass", "data": {"path": "/unused"}, "schema": {"source": "inferred"},
        "features": [{"name": "x", "kind": "numeric"}],
        "label": {"column": "kind", "classes": ["ok", "dent", "scratch"]},
        "evaluation": {"thresholds": {"sparse_categorical_accuracy": 0.5}},
    })
    column = tf.SparseTensor([[0, 0], [1, 0], [3, 0]], tf.constant([b"dent", b"ok", b"rust"]), [4, 1])
    assert preprocessing.make_label(config, {"kind": column}).numpy().tolist() == [1, 0, -1, -1]


def test_to_dense_fills_missing_rows():
    sparse = tf.SparseTensor([[0, 0], [2, 0]], tf.constant([1.5, 2.5]), [3, 1])
    assert preprocessing.to_dense(sparse, 9.0).numpy().tolist() == [1.5, 9.0, 2.5]

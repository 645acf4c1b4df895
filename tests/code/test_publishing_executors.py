"""The Pusher's and TFLiteExport's executors publishing to TensorFlow's ram:// filesystem, which
os calls cannot reach, as they would to gs:// on Kubeflow; then the readers on what they wrote.
ram:// belongs to one process, so the executors run in-process, on artifacts as TFX passes them."""
import json
import os
import uuid

import numpy as np
import pytest
import tensorflow as tf
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.atomic_pusher.executor import Executor as PusherExecutor
from components.tflite_export.component import EdgeModel
from components.tflite_export.executor import Executor as TFLiteExportExecutor
from serving import layout, model_config, release_state
from serving.edge import runtime
from trainer.export import RAW_FEATURES_FILE, SERVING_DEFAULT, SERVING_RAW, TRANSFORM_FEATURES

RAW_INPUTS = [{"name": "x", "dtype": "float32", "default": 0.0}]


def _artifact(kind, uri, **properties):
    artifact = kind()
    artifact.uri = uri
    for name, value in properties.items():
        (artifact.set_int_custom_property if isinstance(value, int) else artifact.set_string_custom_property)(
            name, value)
    return artifact


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory):
    """A Model artifact laid out as the Trainer writes one: Format-Serving/ with the three
    signatures TFLiteExport uses and assets.extra/raw_features.json. score = sigmoid(4x - 2);
    label = x > 0.5."""
    uri = tmp_path_factory.mktemp("trainer") / "model"

    def parse(examples):
        return tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([], tf.float32, 0.0)})["x"]

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def raw(self, x):
            return {"scores": tf.reshape(tf.sigmoid(4.0 * x - 2.0), [-1, 1])}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            return self.raw(parse(examples))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def transform(self, examples):
            return {"big": tf.cast(parse(examples) > 0.5, tf.int64)}

    module = Model()
    serving = uri / "Format-Serving"
    tf.saved_model.save(module, str(serving), signatures={SERVING_RAW: module.raw, SERVING_DEFAULT: module.serve,
                                                          TRANSFORM_FEATURES: module.transform})
    (serving / RAW_FEATURES_FILE).parent.mkdir(exist_ok=True)
    (serving / RAW_FEATURES_FILE).write_text(json.dumps(RAW_INPUTS))
    return str(uri)


@pytest.fixture
def ram():
    return f"ram://{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def quick_object_lock(monkeypatch):
    monkeypatch.setattr(layout, "LOCK_SETTLE_SECONDS", 0.01)


def _push(model_uri, base_directory, pushed_uri, blessed=1):
    pushed = _artifact(standard_artifacts.PushedModel, pushed_uri)
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base_directory))
    PusherExecutor().Do({"model": [_artifact(standard_artifacts.Model, model_uri)],
                         "model_blessing": [_artifact(standard_artifacts.ModelBlessing, "unused", blessed=blessed)]},
                        {"pushed_model": [pushed]}, {"push_destination": proto_utils.proto_to_json(destination)})
    return pushed


def _eval_examples(uri, count=400):
    os.makedirs(os.path.join(uri, "Split-eval"))
    values = np.random.default_rng(3).uniform(0, 1, count)
    with tf.io.TFRecordWriter(os.path.join(uri, "Split-eval", "data.gz"), options="GZIP") as writer:
        for value in values:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[value]))})).SerializeToString())
    return _artifact(standard_artifacts.Examples, uri)


def test_the_pusher_publishes_to_ram_and_the_configs_follow(model_uri, ram, tmp_path):
    serving = f"{ram}/serving"
    pushed = _push(model_uri, f"{serving}/taxi", str(tmp_path / "pushed"))
    version = pushed.get_string_custom_property("pushed_version")
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == f"{serving}/taxi/{version}"
    assert layout.saved_model_versions(f"{serving}/taxi") == [int(version)]
    loaded = tf.saved_model.load(f"{serving}/taxi/{version}")
    assert loaded.signatures[SERVING_RAW](x=tf.constant([0.5]))["scores"].numpy().tolist() == [[0.5]]
    entry = model_config.find_model(model_config.read_model_server_config(f"{serving}/models.local.config"), "taxi")
    assert (entry.base_path, dict(entry.version_labels)) == (f"{serving}/taxi", {"stable": int(version)})
    assert release_state.read_release(serving, "taxi").events[0]["version"] == int(version)

    # A re-run with the same model publishes nothing new; one that is not blessed publishes nothing.
    assert _push(model_uri, f"{serving}/taxi", str(tmp_path / "again")).get_string_custom_property(
        "pushed_version") == version
    assert _push(model_uri, f"{serving}/other", str(tmp_path / "not"), blessed=0).get_int_custom_property(
        "pushed") == 0
    assert not layout.exists(f"{serving}/other")


def test_tflite_export_publishes_to_ram_and_the_edge_runtime_reads_it(model_uri, ram, tmp_path):
    edge_dir = f"{ram}/edge"
    edge_model = _artifact(EdgeModel, f"{ram}/artifacts/edge_model")
    inputs = {"model": [_artifact(standard_artifacts.Model, model_uri)],
              "model_blessing": [_artifact(standard_artifacts.ModelBlessing, "unused", blessed=1)],
              "examples": [_eval_examples(str(tmp_path / "examples"))],
              "pushed_model": [_artifact(standard_artifacts.PushedModel, "unused", pushed=1,
                                         pushed_version="1700000000")]}
    TFLiteExportExecutor().Do(inputs, {"edge_model": [edge_model]}, {
        "edge_dir": edge_dir, "model_name": "taxi", "task": "binary", "output_key": "scores", "label_name": "big",
        "max_score_diff": 1e-4, "max_metric_drop": 0.005, "max_examples": 400})

    assert edge_model.get_int_custom_property("exported") == 1
    assert edge_model.get_string_custom_property("edge_path") == f"{edge_dir}/taxi/1700000000"
    assert layout.edge_versions(f"{edge_dir}/taxi") == [1700000000]
    manifest = layout.read_manifest(f"{edge_dir}/taxi/1700000000")
    assert json.loads(layout.read_text(f"{edge_model.uri}/{layout.MANIFEST}")) == manifest
    assert (manifest["signature"], manifest["outputs"], manifest["metrics"]["examples"]) == (SERVING_RAW, ["scores"],
                                                                                           400)
    model = runtime.load_newest(f"{edge_dir}/taxi", "quantized")
    assert model.version == 1700000000
    np.testing.assert_allclose(model.predict([{"x": 0.5}, {"x": 1.0}]), [[0.5], [1 / (1 + np.exp(-2.0))]], atol=1e-3)

"""`tfxline run` as installed, with its speed-ups and with TFXLINE_SPEEDUPS=0: every component runs,
the model is pushed, and both runs give the same examples, schema, transform output and scores."""
import glob
import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from config import load_config
from tests.conftest import write_config
from tests.helpers import TFXLINE, latest_artifact_uri, pushed_versions

pytestmark = pytest.mark.e2e


def run_command(tmp_path_factory, small_taxi_dir, speedups: str):
    root = tmp_path_factory.mktemp(f"speedups-{speedups}")
    config_path = write_config(root, data={"path": str(small_taxi_dir)}, output={"root": str(root / "out")})
    result = subprocess.run([TFXLINE, "run", "--config", str(config_path)], capture_output=True, text=True,
                            timeout=900, cwd=root, env={**os.environ, "TFXLINE_SPEEDUPS": speedups})
    assert result.returncode == 0, result.stderr[-3000:]
    return load_config(str(config_path)), result


@pytest.fixture(scope="module")
def with_speedups(tmp_path_factory, small_taxi_dir):
    return run_command(tmp_path_factory, small_taxi_dir, "1")


@pytest.fixture(scope="module")
def without_speedups(tmp_path_factory, small_taxi_dir):
    return run_command(tmp_path_factory, small_taxi_dir, "0")


def test_the_command_runs_every_component_and_pushes(with_speedups):
    config, result = with_speedups
    assert "[14/14] TFLiteExport                   done" in result.stdout
    assert "Summary of 'taxi': 14 components" in result.stdout and "blessed     yes" in result.stdout
    (version,) = pushed_versions(config)
    assert f"pushed      version {version} to " in result.stdout
    assert os.path.isfile(os.path.join(config.output.serving, config.name, str(version), "saved_model.pb"))
    assert os.path.isdir(os.path.join(config.output.edge, config.name, str(version)))
    assert "speed-up" not in result.stderr  # every speed-up matched its library version


def records(config, component: str, output: str, split: str) -> list:
    files = sorted(glob.glob(os.path.join(latest_artifact_uri(config, component, output), f"Split-{split}", "*")))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_the_same_examples_schema_transform_and_scores_without_speedups(with_speedups, without_speedups):
    fast, slow = with_speedups[0], without_speedups[0]
    for split in ("train", "eval"):
        assert records(fast, "CsvExampleGen", "examples", split) == records(slow, "CsvExampleGen", "examples", split)
    schemas = [open(os.path.join(latest_artifact_uri(c, "ImportSchemaGen", "schema"), "schema.pbtxt")).read()
               for c in (fast, slow)]
    assert schemas[0] == schemas[1]

    examples = tf.constant(records(fast, "CsvExampleGen", "examples", "eval"))
    transformed = []
    for config in (fast, slow):
        output = tft.TFTransformOutput(latest_artifact_uri(config, "Transform", "transform_graph"))
        features = output.transform_features_layer()(tf.io.parse_example(examples, output.raw_feature_spec()))
        transformed.append({k: tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v.numpy()
                            for k, v in features.items()})
    assert sorted(transformed[0]) == sorted(transformed[1])
    for name in transformed[0]:
        if np.issubdtype(transformed[0][name].dtype, np.floating):
            # TFT's mean and variance are float32 sums combined across Beam bundles, whose split depends on
            # the worker threads' timing: two runs of the same code can differ in the last bit.
            np.testing.assert_allclose(transformed[0][name], transformed[1][name], rtol=1e-6, atol=1e-6,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(transformed[0][name], transformed[1][name], err_msg=name)

    scores = []
    for config in (fast, slow):
        version_dir = os.path.join(config.output.serving, config.name, pushed_versions(config)[-1])
        model = tf.saved_model.load(version_dir)
        scores.append(model.signatures["serving_default"](examples=examples)["scores"].numpy())
    np.testing.assert_allclose(scores[0], scores[1], rtol=0, atol=1e-6)

    manifests = []
    for config in (fast, slow):
        version_dir = os.path.join(config.output.edge, config.name, pushed_versions(config)[-1])
        with open(os.path.join(version_dir, "manifest.json")) as handle:
            manifests.append(json.load(handle)["metrics"])
    assert manifests[0]["examples"] == manifests[1]["examples"]
    assert manifests[0]["saved_model_metric"] == pytest.approx(manifests[1]["saved_model_metric"], abs=1e-6)

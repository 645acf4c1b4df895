"""TFX's BulkInferrer after the Evaluator (bulk_inferrer.enabled) on the exported model, and the same
split scored by `tfxline score` with the pushed version: both give the SavedModel's scores."""
import csv
import glob
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from config import load_config
from tests.conftest import write_config
from tests.helpers import TFXLINE, latest_artifact_uri, pushed_versions

pytestmark = pytest.mark.e2e


def test_bulk_inferrer_predicts_the_eval_split_as_tfxline_score_does(small_taxi_dir, tmp_path):
    config_path = write_config(tmp_path, data={"path": str(small_taxi_dir)}, output={"root": str(tmp_path / "out")},
                               bulk_inferrer={"enabled": True, "split": "eval"})
    run = subprocess.run([TFXLINE, "run", "--config", str(config_path)], capture_output=True, text=True,
                         timeout=1800, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "BulkInferrer" in run.stdout
    config = load_config(str(config_path))

    inference = latest_artifact_uri(config, "BulkInferrer", "inference_result")
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in tf.data.TFRecordDataset(
        glob.glob(os.path.join(inference, "*.gz")), compression_type="GZIP")]
    examples = latest_artifact_uri(config, "CsvExampleGen", "examples")
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(glob.glob(os.path.join(examples, "Split-eval", "*")),
                                                             compression_type="GZIP")]
    assert len(logs) == len(serialized) > 0
    logged = [log.predict_log.request.inputs["examples"].string_val[0] for log in logs]
    bulk = np.array([tf.make_ndarray(log.predict_log.response.outputs["scores"])[0, 0] for log in logs])

    version = pushed_versions(config)[-1]
    saved_model = tf.saved_model.load(os.path.join(config.output.serving, config.name, version))
    expected = saved_model.signatures["serving_default"](examples=tf.constant(logged))["scores"].numpy()[:, 0]
    np.testing.assert_allclose(bulk, expected, atol=1e-6)

    scored = subprocess.run([TFXLINE, "score", os.path.join(examples, "Split-eval"), "--output",
                             str(tmp_path / "scores"), "--config", str(config_path)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    rows = [row for path in sorted(glob.glob(str(tmp_path / "scores" / "scores-*.csv")))
            for row in csv.DictReader(open(path))]
    by_example = {serialized[int(row["row"])]: float(row["scores"]) for row in rows}  # one Split-eval file
    assert len(glob.glob(os.path.join(examples, "Split-eval", "*"))) == 1 and len(rows) == len(serialized)
    np.testing.assert_allclose([by_example[example] for example in logged], bulk, atol=1e-6)

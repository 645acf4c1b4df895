"""The pipeline on a different CSV (other columns; multiclass, and binary on a 0/1 column) by config alone."""
import json
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from config import load_config
from tests.conftest import run_pipeline, write_csv
from tests.helpers import TFXLINE, eval_examples, pushed_versions

pytestmark = pytest.mark.e2e
CLASSES = ["ok", "dent", "scratch"]


def _inspection_rows(count: int, seed: int = 3):
    """Synthetic part inspections: the defect follows from pressure and line, with noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        pressure = rng.uniform(0, 10)
        line = rng.choice(["A", "B", "C"])
        shift = rng.randint(0, 2)
        vibration = rng.gauss(1.0, 0.3)
        if pressure > 7 or (line == "C" and pressure > 5):
            defect = "dent"
        elif vibration > 1.3:
            defect = "scratch"
        else:
            defect = "ok"
        if rng.random() < 0.05:
            defect = rng.choice(CLASSES)
        rows.append([f"{pressure:.3f}", f"{vibration:.3f}", line, shift, defect])
    return ["pressure", "vibration", "line", "shift", "defect"], rows


def test_multiclass_pipeline_from_config_only(tmp_path):
    header, rows = _inspection_rows(800)
    write_csv(tmp_path / "data" / "parts.csv", header, rows)
    config = {
        "name": "inspection",
        "task": "multiclass",
        "data": {"path": str(tmp_path / "data")},
        "schema": {"source": "inferred"},
        "features": [
            {"name": "pressure", "kind": "numeric"},
            {"name": "vibration", "kind": "bucketized", "buckets": 4},
            {"name": "line", "kind": "categorical_string"},
            {"name": "shift", "kind": "categorical_int", "num_values": 3},
        ],
        "label": {"column": "defect", "classes": CLASSES, "name": "defect_id"},
        "training": {"epochs": 30, "batch_size": 32, "hidden_units": [16]},
        "evaluation": {"thresholds": {"sparse_categorical_accuracy": 0.6}, "slices": [[], ["line"]]},
        "output": {"root": str(tmp_path / "out")},
    }
    config_path = tmp_path / "inspection.yaml"
    config_path.write_text(yaml.safe_dump(config))

    loaded, lines, error = run_pipeline(config_path)
    assert error is None, error
    assert "SchemaGen" in " ".join(lines) and "ImportSchemaGen" not in " ".join(lines)
    versions = pushed_versions(loaded)
    assert len(versions) == 1
    model = tf.saved_model.load(os.path.join(loaded.output.serving, "inspection", versions[0]))
    scores = model.signatures["serving_default"](examples=tf.constant(eval_examples(loaded)))["scores"].numpy()
    assert scores.shape[1] == len(CLASSES)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    raw = model.signatures["serving_raw"](
        pressure=tf.constant([9.0, 1.0]), vibration=tf.constant([1.0, 1.0]),
        line=tf.constant(["A", "A"]), shift=tf.constant([0, 0], tf.int64))["scores"].numpy()
    assert raw.argmax(axis=1).tolist() == [1, 0]  # high pressure is a dent; low pressure is ok

    reviewed = subprocess.run([TFXLINE, "review", "--config", str(config_path)], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
    assert reviewed.returncode == 0, reviewed.stderr
    report = json.loads((Path(reviewed.stdout.strip()).parent / "review.json").read_text())
    entries = report["plots"]["confusion_matrix"]["candidate"]
    assert {e["actual"] for e in entries} == {0, 1, 2}
    assert sum(e["count"] for e in entries) == report["summary"]["rows"]["eval"]
    assert report["fairness"] is None and "line=" in " ".join(row["slice"] for row in report["slices"]["rows"])


def test_binary_pipeline_on_a_zero_one_column(tmp_path):
    header, rows = _inspection_rows(800, seed=5)
    # The inspection PC's own verdict column: 1 for a defective part, 0 for a good one.
    write_csv(tmp_path / "data" / "parts.csv", header[:-1] + ["defective"],
              [row[:-1] + [int(row[-1] != "ok")] for row in rows])
    config = {
        "name": "defects",
        "task": "binary",
        "data": {"path": str(tmp_path / "data")},
        "schema": {"source": "inferred"},
        "features": [{"name": "pressure", "kind": "numeric"}, {"name": "vibration", "kind": "numeric"},
                     {"name": "line", "kind": "categorical_string"}],
        "label": {"column": "defective", "name": "defective"},
        "training": {"epochs": 20, "batch_size": 32, "hidden_units": [16]},
        "evaluation": {"thresholds": {"auc": 0.8}},
        "edge": {"enabled": False},
        "output": {"root": str(tmp_path / "out")},
    }
    config_path = tmp_path / "defects.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = subprocess.run([TFXLINE, "run", "--config", str(config_path)], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "blessed     yes" in result.stdout
    loaded = load_config(str(config_path))
    (version,) = pushed_versions(loaded)
    model = tf.saved_model.load(os.path.join(loaded.output.serving, "defects", version))
    raw = model.signatures["serving_raw"](pressure=tf.constant([9.5, 1.0]), vibration=tf.constant([1.0, 1.0]),
                                          line=tf.constant(["A", "A"]))["scores"].numpy()
    assert raw[0, 0] > 0.5 > raw[1, 0]  # high pressure makes a dent

    reviewed = subprocess.run([TFXLINE, "review", "--config", str(config_path)], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
    assert reviewed.returncode == 0, reviewed.stderr
    report = json.loads((Path(reviewed.stdout.strip()).parent / "review.json").read_text())
    matrix = report["plots"]["confusion_matrix"]["candidate"]
    assert sum(matrix.values()) == report["summary"]["rows"]["eval"] and report["plots"]["curves"]["candidate"]
    assert "edge" not in report["summary"] and report["summary"]["pushed_version"] == version

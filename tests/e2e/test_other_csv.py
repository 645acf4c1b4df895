"""The pipeline on a different CSV (other columns, multiclass task) by config alone."""
import os
import random

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tests.conftest import run_pipeline, write_csv
from tests.helpers import eval_examples, pushed_versions

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

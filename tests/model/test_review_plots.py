"""The review's plots from TFMA's own output on labelled, scored examples (TFMA's model-agnostic mode,
a real Beam run), against the same numbers computed with numpy: the confusion matrix at the
decision threshold, the ROC and precision-recall points, calibration, residuals by slice."""
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from config import load_config
from pipeline.pipeline import eval_config
from review import evaluation
from tests.conftest import write_config


def write_examples(path, rows, label_name):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for company, label, score in rows:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "company": tf.train.Feature(bytes_list=tf.train.BytesList(value=[company.encode()])),
                label_name: tf.train.Feature(float_list=tf.train.FloatList(value=[label])),
                "score": tf.train.Feature(float_list=tf.train.FloatList(value=[score])),
            })).SerializeToString())
    return str(path)


def analyze(tmp_path, overrides, rows, label_name):
    config = load_config(str(write_config(tmp_path / "config", **overrides)))
    tfma_config = eval_config(config)
    del tfma_config.model_specs[:]
    tfma_config.model_specs.add(label_key=label_name, prediction_key="score")
    output = str(tmp_path / "evaluation")
    tfma.run_model_analysis(eval_config=tfma_config, output_path=output,
                            data_location=write_examples(tmp_path / "rows.tfrecord", rows, label_name))
    return config, evaluation.load(output)


def test_binary_plots_are_the_scores_counted_by_hand(tmp_path):
    rng = random.Random(5)
    rows = []
    for _ in range(600):
        label = float(rng.random() < 0.4)
        rows.append((rng.choice("AB"), label, float(np.float32(min(1, max(0, rng.gauss(0.3 + 0.35 * label, 0.2)))))))
    config, loaded = analyze(tmp_path, {"evaluation": {"thresholds": {"auc": 0.5}, "change_thresholds": {},
                                                       "fairness": {"features": [], "decision_threshold": 0.4}}},
                             rows, "big_tipper")
    plots = evaluation.plots(loaded, "binary", 10)
    labels = np.array([label for _, label, _ in rows]) == 1
    scores = np.array([score for _, _, score in rows], dtype=np.float32)
    predicted = scores > 0.4
    assert plots["decision_threshold"] == 0.4
    assert plots["confusion_matrix"]["candidate"] == {
        "tp": float(np.sum(predicted & labels)), "fp": float(np.sum(predicted & ~labels)),
        "tn": float(np.sum(~predicted & ~labels)), "fn": float(np.sum(~predicted & labels))}
    curve = plots["curves"]["candidate"]
    assert len(curve) >= 100
    for point in curve[5:-5:9]:
        above = scores > point["threshold"]
        assert point["recall"] == pytest.approx(np.sum(above & labels) / np.sum(labels), abs=1e-9)
        assert point["false_positive_rate"] == pytest.approx(np.sum(above & ~labels) / np.sum(~labels), abs=1e-9)
    buckets = plots["calibration"]["candidate"]
    assert sum(b["count"] for b in buckets) == len(rows)
    for bucket in buckets:
        inside = (scores >= bucket["low"]) & (scores < bucket["high"])
        assert bucket["count"] == np.sum(inside)
        assert bucket["mean_label"] == pytest.approx(np.mean(labels[inside]), abs=1e-9)
        assert bucket["mean_prediction"] == pytest.approx(np.mean(scores[inside]), abs=1e-6)


def test_regression_residuals_by_slice_are_mean_prediction_minus_mean_label(tmp_path):
    rng = random.Random(6)
    rows = [(company, value, float(np.float32(value + (1.5 if company == "B" else -0.5) + rng.gauss(0, 1))))
            for company in "AB" for value in (float(np.float32(rng.uniform(0, 20))) for _ in range(150))]
    overrides = {"task": "regression", "label": {"column": "tips", "rule": "none", "threshold": None,
                                                 "of_column": None, "name": "tips"},
                 "evaluation": {"thresholds": {"mean_absolute_error": 5.0}, "change_thresholds": {},
                                "slices": [[], ["company"]], "fairness": {}}}
    _, loaded = analyze(tmp_path, overrides, rows, "tips")
    residuals = {r["slice"]: r for r in evaluation.plots(loaded, "regression", 10)["residuals"]}
    for company in "AB":
        labels = np.array([v for c, v, _ in rows if c == company])
        predictions = np.array([p for c, _, p in rows if c == company])
        row = residuals[f"company={company}"]
        assert row["count"] == 150
        assert row["residual"] == pytest.approx(predictions.mean() - labels.mean(), abs=1e-6)
    assert residuals["company=B"]["residual"] > 1 > 0 > residuals["company=A"]["residual"]

"""The fairness gate as TFMA runs it: the pipeline's EvalConfig on labelled, scored examples (TFMA's
model-agnostic mode, a real Beam run), compared with fairlearn 0.9.0 and scipy on the same rows."""
import random

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_model_analysis as tfma
from fairlearn import metrics as fairlearn_metrics

from components.evaluator.executor import corrected
from config import load_config
from pipeline.pipeline import eval_config
from review import evaluation, fairness
from tests.conftest import write_config

# group -> (rows, positive rate, score shift): a small group D, and B scored higher than its labels say.
GROUPS = {"A": (400, 0.30, 0.0), "B": (300, 0.35, 0.25), "C": (200, 0.25, 0.0), "D": (8, 0.5, 0.4)}
MIN_GROUP_SIZE = 30


def scored_rows(seed: int = 3):
    rng = random.Random(seed)
    rows = []
    for group, (count, rate, shift) in GROUPS.items():
        for _ in range(count):
            label = int(rng.random() < rate)
            score = min(1.0, max(0.0, rng.gauss(0.62 if label else 0.35, 0.15) + shift))
            rows.append((group, label, score))
    return rows


def write_examples(path, rows) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for group, label, score in rows:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "company": tf.train.Feature(bytes_list=tf.train.BytesList(value=[group.encode()])),
                "big_tipper": tf.train.Feature(float_list=tf.train.FloatList(value=[float(label)])),
                "score": tf.train.Feature(float_list=tf.train.FloatList(value=[score])),
            })).SerializeToString())
    return str(path)


def analyze(tmp_path, rows, max_gaps):
    """The pipeline's EvalConfig with TFMA reading the scores from the examples instead of a model."""
    config = load_config(str(write_config(tmp_path / "config", evaluation={
        "thresholds": {"auc": 0.5}, "change_thresholds": {},
        "fairness": {"features": ["company"], "decision_threshold": 0.5, "min_group_size": MIN_GROUP_SIZE,
                     "max_gaps": max_gaps}})))
    tfma_config = eval_config(config)
    del tfma_config.model_specs[:]
    tfma_config.model_specs.add(label_key="big_tipper", prediction_key="score")
    output = str(tmp_path / "evaluation")
    tfma.run_model_analysis(eval_config=tfma_config, data_location=write_examples(tmp_path / "rows.tfrecord", rows),
                            output_path=output)
    return output


@pytest.fixture(scope="module")
def loose(tmp_path_factory):
    rows = scored_rows()
    return rows, analyze(tmp_path_factory.mktemp("loose"), rows, {
        "company": {"demographic_parity_difference": 0.9, "equalized_odds_difference": 0.9}})


def fairlearn_view(rows, threshold=0.5, min_size=MIN_GROUP_SIZE):
    groups = np.array([g for g, _, _ in rows])
    keep = np.isin(groups, [g for g, (n, _, _) in GROUPS.items() if n >= min_size])
    y_true = np.array([label for _, label, _ in rows])[keep]
    y_pred = (np.array([score for _, _, score in rows]) > threshold).astype(int)[keep]
    return y_true, y_pred, groups[keep]


def test_group_rates_and_gaps_equal_fairlearns(loose):
    rows, output = loose
    view = fairness.fairness(evaluation.load(output), ["company"], [], min_count=1)
    feature = view["features"][0]
    y_true, y_pred, groups = fairlearn_view(rows)
    frame = fairlearn_metrics.MetricFrame(
        metrics={"selection_rate": fairlearn_metrics.selection_rate,
                 "true_positive_rate": fairlearn_metrics.true_positive_rate,
                 "false_positive_rate": fairlearn_metrics.false_positive_rate,
                 "false_negative_rate": fairlearn_metrics.false_negative_rate},
        y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    by_group = {group["group"]: group for group in feature["groups"]}
    assert set(by_group) == set(GROUPS)
    assert not by_group["D"]["sufficient"] and all(by_group[g]["sufficient"] for g in "ABC")
    for group in "ABC":
        assert by_group[group]["count"] == GROUPS[group][0]
        for rate in fairness.RATE_COUNTS:
            assert by_group[group][rate]["value"] == pytest.approx(frame.by_group.loc[group, rate], abs=1e-9), rate
    assert feature["gaps"]["demographic_parity_difference"]["value"] == pytest.approx(
        fairlearn_metrics.demographic_parity_difference(y_true, y_pred, sensitive_features=groups), abs=1e-9)
    assert feature["gaps"]["equalized_odds_difference"]["value"] == pytest.approx(
        fairlearn_metrics.equalized_odds_difference(y_true, y_pred, sensitive_features=groups), abs=1e-9)
    assert feature["gaps"]["demographic_parity_difference"]["value"] > 0.15  # B is scored higher


def test_intervals_are_wilsons_as_scipy_computes_them(loose):
    rows, output = loose
    feature = fairness.fairness(evaluation.load(output), ["company"], [], min_count=1)["features"][0]
    for group in feature["groups"]:
        members = [(label, score > 0.5) for g, label, score in rows if g == group["group"]]
        positives = [predicted for label, predicted in members if label]
        expected = scipy.stats.binomtest(sum(positives), len(positives)).proportion_ci(method="wilson")
        assert group["true_positive_rate"]["interval"] == pytest.approx([expected.low, expected.high], abs=1e-12)
        selected = sum(predicted for _, predicted in members)
        expected = scipy.stats.binomtest(selected, len(members)).proportion_ci(method="wilson")
        assert group["selection_rate"]["interval"] == pytest.approx([expected.low, expected.high], abs=1e-12)


def test_tfma_alone_fails_every_cross_slice_threshold_and_the_correction_does_not(loose):
    """TFMA 0.47 reports the gated pair spec as missing although it checked every pair: the model would
    never be blessed. The Evaluator's correction finds the pairs in TFMA's metrics and passes it."""
    _, output = loose
    result = tfma.load_validation_result(output)
    assert not result.validation_ok and len(result.missing_cross_slices) == 1
    assert not result.metric_validations_per_slice  # no threshold was actually missed
    fixed = corrected(result, list(tfma.load_metrics(output)))
    assert fixed.validation_ok and not fixed.missing_cross_slices


def test_a_gap_beyond_its_bound_fails_validation_and_small_groups_are_not_compared(tmp_path):
    rows = scored_rows()
    output = analyze(tmp_path, rows, {"company": {"demographic_parity_difference": 0.05}})
    fixed = corrected(tfma.load_validation_result(output), list(tfma.load_metrics(output)))
    assert not fixed.validation_ok and not fixed.missing_cross_slices
    loaded = evaluation.load(output)
    loaded.validation = fixed  # as the Evaluator's executor writes it back
    failures = evaluation.validation_failures(loaded)
    assert failures and {f["metric"] for f in failures} == {"demographic_parity_difference"}
    pairs = {f["slice"] for f in failures}
    assert all("company=D" not in pair for pair in pairs)  # 8 examples: below the minimum group size
    assert any("company=B" in pair for pair in pairs)
    for failure in failures:
        assert failure["value"] > 0.05 and failure["threshold"] == {"kind": "value", "upper": 0.05}
    d_pairs = [pair for pair in loaded.cross if ("company", "D") in pair[0] + pair[1]]
    assert d_pairs and all(loaded.cross_value(pair, "demographic_parity_difference") == 0.0 for pair in d_pairs)


def test_without_gap_bounds_tfmas_result_is_left_alone(tmp_path):
    output = analyze(tmp_path, scored_rows(), {})
    result = tfma.load_validation_result(output)
    assert result.validation_ok and not result.missing_cross_slices
    assert corrected(result, list(tfma.load_metrics(output))) is None

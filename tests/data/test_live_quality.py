"""The live metrics of monitoring/quality.py against scikit-learn's, and their 95% intervals' coverage on
simulated labels whose true metric is known."""
import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from monitoring import quality


def test_point_values_equal_scikit_learns():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0, 1)
    p[:40] = 0.5  # ties
    live = quality.metrics("binary", y.astype(float), [[v] for v in p])
    assert live["auc"].value == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    assert live["binary_accuracy"].value == pytest.approx(sk.accuracy_score(y, p >= 0.5), abs=1e-12)
    assert live["log_loss"].value == pytest.approx(sk.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), rel=1e-9)
    classes = rng.integers(0, 3, 300)
    probabilities = rng.dirichlet([1, 1, 1], 300)
    multi = quality.metrics("multiclass", classes.astype(float), probabilities.tolist())
    assert multi["sparse_categorical_accuracy"].value == pytest.approx(
        sk.accuracy_score(classes, probabilities.argmax(1)))
    assert multi["log_loss"].value == pytest.approx(sk.log_loss(classes, probabilities, labels=[0, 1, 2]), rel=1e-6)
    target, predicted = rng.normal(size=200), rng.normal(size=200)
    regression = quality.metrics("regression", target, [[v] for v in predicted])
    assert regression["mean_squared_error"].value == pytest.approx(sk.mean_squared_error(target, predicted))
    assert regression["mean_absolute_error"].value == pytest.approx(sk.mean_absolute_error(target, predicted))


def test_intervals_cover_the_true_value_about_95_percent_of_the_time():
    """Positives ~ N(1, 1), negatives ~ N(0, 1): AUC = Phi(1 / sqrt(2)); accuracy at 0.5 of the logistic score
    = Phi(0.5). 400 replays of 300 labels; a binomial bound around 95% (the interval is asymptotic)."""
    rng = np.random.default_rng(1)
    true_auc, true_accuracy = stats.norm.cdf(1 / math.sqrt(2)), stats.norm.cdf(0.5)
    covered = {"auc": 0, "binary_accuracy": 0}
    replays = 400
    for _ in range(replays):
        y = rng.integers(0, 2, 300)
        score = rng.normal(y.astype(float), 1.0)
        p = 1 / (1 + np.exp(-(score - 0.5)))
        live = quality.metrics("binary", y.astype(float), [[v] for v in p])
        covered["auc"] += live["auc"].low <= true_auc <= live["auc"].high
        accuracy = live["binary_accuracy"]
        covered["binary_accuracy"] += accuracy.low <= true_accuracy <= accuracy.high
    low, high = stats.binom.ppf([0.0005, 0.9995], replays, 0.95) / replays
    for name, count in covered.items():
        assert low - 0.02 <= count / replays <= high, (name, count / replays)


def test_too_few_labels_give_no_interval():
    live = quality.metrics("binary", np.array([1.0]), [[0.9]])
    assert live["auc"] is None and live["log_loss"] is None and live["binary_accuracy"].value == 1.0

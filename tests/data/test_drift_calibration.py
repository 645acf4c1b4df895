"""False alarms and power of the drift tests on replays of the taxi data (benchmarks/drift_benchmark.py runs
the full 500 replays per window size and TFDV's fixed thresholds beside them; the slow test below too).

Bounds: false alarms in R replays are Binomial(R, p). A test calibrated at the target p (5% per window,
1% per feature) exceeds the 99.9% quantile of that binomial 1 time in 1,000; a test at three times the
target almost always does at these R. Detections below the 0.1% quantile of Binomial(R, 0.95) are as rare
for a test with 95% power."""
import numpy as np
import pytest
from scipy import stats

from benchmarks import drift_benchmark as bench
from monitoring import compare, statistics

NULL_REPLAYS = 60
POWER_REPLAYS = 30
REFERENCE_ROWS = 15_000
# Detecting 3 points at n = 10,000 with 95% power needs a reference larger than the taxi data's 15,000
# rows: its own sampling noise is part of the two-sample test's variance.
POWER_REFERENCE_ROWS = 50_000


@pytest.fixture(scope="module")
def pop():
    return bench.population()


def _window_bound(replays):
    return stats.binom.ppf(0.999, replays, 0.05)


def _feature_bound(replays, features):
    return stats.binom.ppf(0.999, replays * features, 0.01)


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_false_alarms_on_unshifted_data(pop, n):
    result = bench.rates(pop, NULL_REPLAYS, REFERENCE_ROWS, n, seed=n, with_tfdv=False)["tfxline"]
    assert result["window"] * NULL_REPLAYS <= _window_bound(NULL_REPLAYS), result
    assert result["feature"] * NULL_REPLAYS * len(pop.kinds) <= _feature_bound(NULL_REPLAYS, len(pop.kinds)), result


def test_small_shifts_are_detected_at_10k(pop):
    floor = stats.binom.ppf(0.001, POWER_REPLAYS, 0.95)
    for seed, (label, (feature, shift)) in enumerate(bench.shifts(pop).items()):
        result = bench.rates(pop, POWER_REPLAYS, POWER_REFERENCE_ROWS, bench.SHIFT_WINDOW, seed, shift,
                             with_tfdv=False)["tfxline"]
        assert result["per_feature"][feature] * POWER_REPLAYS >= floor, (label, result)


def test_thresholds_follow_the_sample_sizes(pop):
    """The same feature's KS threshold at 1k, 10k, 100k window rows shrinks like sqrt(1/n + 1/m)."""
    rng = np.random.default_rng(3)
    options = statistics.Options()
    reference = statistics.profile(pop.draw(REFERENCE_ROWS, rng), pop.kinds, options)
    thresholds = []
    for n in (1_000, 10_000, 100_000):
        window = statistics.profile(pop.draw(n, rng), pop.kinds, options, align=reference)
        result = compare.compare_feature("fare", reference.features["fare"], window.features["fare"], 0.01)
        thresholds.append(result.threshold)
        expected = stats.kstwo.isf(0.01, round(n * REFERENCE_ROWS / (n + REFERENCE_ROWS)))
        assert result.threshold == pytest.approx(expected)
    assert thresholds[0] > thresholds[1] > thresholds[2]


@pytest.mark.slow
@pytest.mark.parametrize("n", bench.WINDOW_SIZES)
def test_false_alarms_on_500_replays(pop, n):
    result = bench.rates(pop, 500, REFERENCE_ROWS, n, seed=100 + n, with_tfdv=False)["tfxline"]
    assert result["window"] <= 0.05 and result["worst_feature"] <= 0.01, result


@pytest.mark.slow
def test_shifts_detected_in_500_replays(pop):
    for seed, (label, (feature, shift)) in enumerate(bench.shifts(pop).items()):
        result = bench.rates(pop, 500, POWER_REFERENCE_ROWS, bench.SHIFT_WINDOW, seed, shift, with_tfdv=False)
        assert result["tfxline"]["per_feature"][feature] >= 0.95, (label, result)

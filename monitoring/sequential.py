"""A/B statistics for `tfxline release compare`: the sample-ratio-mismatch check of a traffic split, the
fixed-horizon difference of two means with its confidence interval (statsmodels), and a sequential test
that stays valid however often it is looked at: the mixture sequential probability ratio test (mSPRT) of
Johari, Pekelis and Walsh ("Always valid inference", 2017), with a normal mixture over the difference.

Its always-valid p-value is the smallest 1 / Lambda_n over every n so far, so checking after each request,
each thousand or once gives the same guarantee: under no difference, P(p ever < alpha) <= alpha."""
import dataclasses
import math
from typing import Optional

import numpy as np
from scipy import stats

SRM_ALPHA = 0.001  # a split this unlikely under the expected shares is a broken split, not chance
# The mixture's scale, in standard deviations of one observation: the size of difference the test is tuned
# to find fastest (any size is found eventually; the guarantee holds for every choice).
MIXTURE_SD = 0.1


@dataclasses.dataclass
class SampleRatio:
    counts: tuple            # observed (stable, canary)
    expected_share: float    # the canary's
    statistic: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_ALPHA


def sample_ratio(stable: int, canary: int, canary_share: float) -> SampleRatio:
    """Pearson's chi-square goodness of fit of the split (scipy)."""
    total = stable + canary
    expected = [total * (1 - canary_share), total * canary_share]
    statistic, p_value = stats.chisquare([stable, canary], expected)
    return SampleRatio((stable, canary), canary_share, float(statistic), float(p_value))


@dataclasses.dataclass
class Difference:
    estimate: float          # canary minus stable
    low: float
    high: float


def difference(stable: np.ndarray, canary: np.ndarray) -> Difference:
    """The fixed-horizon 95% interval of mean(canary) - mean(stable) (Welch, statsmodels)."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    low, high = CompareMeans(DescrStatsW(canary), DescrStatsW(stable)).tconfint_diff(alpha=0.05, usevar="unequal")
    return Difference(float(canary.mean() - stable.mean()), float(low), float(high))


def log_mixture_ratio(estimate, variance, tau2):
    """log Lambda of the normal-mixture SPRT for a difference `estimate` with sampling variance `variance`."""
    return 0.5 * np.log(variance / (variance + tau2)) + estimate ** 2 * tau2 / (2 * variance * (variance + tau2))


def _running(values: np.ndarray):
    """(n, mean, variance) after each observation."""
    n = np.arange(1, len(values) + 1, dtype=np.float64)
    total, squares = np.cumsum(values), np.cumsum(values * values)
    mean = total / n
    variance = np.maximum(squares / n - mean * mean, 0.0) * n / np.maximum(n - 1, 1)
    return n, mean, variance


def always_valid_p(stable: np.ndarray, canary: np.ndarray, stable_first: np.ndarray,
                   tau2: Optional[float] = None, min_each: int = 2) -> float:
    """The always-valid p-value after every observation of the interleaved streams. `stable_first`: for each
    observation in arrival order, True if it is the stable arm's next one. `tau2`: the mixture's variance
    (default (MIXTURE_SD * pooled SD)^2)."""
    order_stable = np.cumsum(stable_first)
    order_canary = np.cumsum(~stable_first)
    n_s, mean_s, var_s = _running(stable)
    n_c, mean_c, var_c = _running(canary)
    ready = (order_stable >= min_each) & (order_canary >= min_each)
    if not ready.any():
        return 1.0
    i, j = order_stable[ready] - 1, order_canary[ready] - 1
    variance = var_s[i] / n_s[i] + var_c[j] / n_c[j]
    if tau2 is None:
        pooled = np.concatenate([stable, canary]).var(ddof=1)
        tau2 = (MIXTURE_SD ** 2) * pooled
    valid = variance > 0
    if not valid.any() or tau2 <= 0:
        return 1.0
    log_lambda = log_mixture_ratio(mean_c[j][valid] - mean_s[i][valid], variance[valid], tau2)
    return float(min(1.0, math.exp(-max(0.0, float(log_lambda.max())))))


def samples_needed(difference_: float, sd_stable: float, sd_canary: float, canary_share: float, tau2: float,
                   alpha: float, have: int) -> Optional[int]:
    """Labelled requests in all (both arms, at `canary_share`) at which a true difference of this size would
    typically cross the mSPRT's boundary; None if it never would (no difference)."""
    if difference_ == 0 or tau2 <= 0:
        return None
    target = math.log(1 / alpha)

    def crosses(n: float) -> bool:
        variance = sd_stable ** 2 / (n * (1 - canary_share)) + sd_canary ** 2 / (n * canary_share)
        return log_mixture_ratio(difference_, variance, tau2) >= target

    high = max(have, 4)
    while not crosses(high):
        high *= 2
        if high > 1e12:
            return None
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if crosses(middle) else (middle, high)
    return int(high)

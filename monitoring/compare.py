"""Two-sample tests of one feature's distribution in a window against a reference, calibrated at the two
sample sizes, with false alarms controlled over all features of a comparison.

- Numeric and bucketized features: the Kolmogorov-Smirnov distance over the values, with missing values
  placed below every value (so a rising missing share moves the distance too). The threshold is the
  two-sample KS critical value at n*m/(n+m) (scipy's `kstwo`), so a large window does not alarm on noise and
  a small one is not held to a bar it cannot reach. Where a distribution is known only between two of its
  stored points, the distance is bounded from below, so ties, binning and sketches make the test stricter,
  never looser.
- Categorical features: each value's share (missing is a value) by its exact conditional test: given the
  value's pooled count, the window's count is hypergeometric under "no change", at any count. The score is
  the largest of these as a z-score (the normal quantile of the exact two-sided p), the threshold the z of
  alpha_f / values (Bonferroni over the values, all but exact this far in the tails). Values too rare to
  test on their own are pooled, decided on the pooled counts alone, which keeps every test exact: a value
  never seen in training with enough rows is a cell of its own and flags, and a few stray ones do not.

Each feature is tested at alpha_f = min(max_feature_alpha, alpha / features) (Bonferroni), so a comparison
of all features false-alarms at most `alpha` of the time and a feature at most alpha_f of the time."""
import dataclasses
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from monitoring.statistics import CategoricalSummary, NumericSummary, Profile

# A value (or hash bucket) is a cell of its own when it is expected at least this often in the smaller
# sample; rarer ones are pooled into one cell.
MIN_EXPECTED = 5.0
MAX_CELLS = 200
Z95 = 1.959963984540054


def feature_alpha(alpha: float, max_feature_alpha: float, features: int) -> float:
    return min(max_feature_alpha, alpha / max(features, 1))


@dataclasses.dataclass
class FeatureResult:
    feature: str
    kind: str
    test: str                 # "ks" or "max_z"
    score: float              # the test statistic
    threshold: float          # its critical value at these sample sizes and alpha_f
    p_value: float
    alpha: float
    drift: bool
    measure: dict             # {"name", "value"}: KS distance, or Jensen-Shannon divergence (log2)
    effect: dict              # {"name", "value", "low", "high", ...}: 95% confidence interval
    missing_share: Tuple[float, float]  # reference, window
    new_share: Optional[float]  # categorical: share of the window's rows with a value the reference lacks
    out_of_range_share: Optional[float]  # numeric: share of the window outside the reference's [min, max]
    rows: Tuple[float, float]
    note: str = ""

    @property
    def ratio(self) -> float:
        """How far past the threshold (>1: drift)."""
        return self.score / self.threshold if self.threshold > 0 else math.inf if self.score > 0 else 0.0


def _bounds(summary: NumericSummary, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of (missing + values <= t) at each point t."""
    edges, cumulative = summary.edges, summary.cumulative
    if not len(edges):
        base = np.full(len(points), summary.missing)
        return base, base
    right = np.searchsorted(edges, points, side="right")
    below = np.where(right > 0, cumulative[np.maximum(right - 1, 0)], 0.0)
    exact = (right > 0) & (edges[np.maximum(right - 1, 0)] == points)
    above = np.where(right < len(edges), cumulative[np.minimum(right, len(edges) - 1)], cumulative[-1])
    upper = np.where(exact | (right == len(edges)), below, above)
    return below + summary.missing - summary.rank_error, upper + summary.missing + summary.rank_error


def ks_distance(reference: NumericSummary, window: NumericSummary) -> float:
    """The certified lower bound of the KS distance between the two distributions (missing below all)."""
    u_r, u_w = reference.units, window.units
    distance = abs(reference.missing / u_r - window.missing / u_w)
    points = np.union1d(reference.edges, window.edges)
    if len(points):
        lo_r, hi_r = _bounds(reference, points)
        lo_w, hi_w = _bounds(window, points)
        gaps = np.maximum(lo_w / u_w - hi_r / u_r, lo_r / u_r - hi_w / u_w)
        distance = max(distance, float(gaps.max()))
    return max(distance, 0.0)


def _numeric(name: str, reference: NumericSummary, window: NumericSummary, alpha: float) -> FeatureResult:
    u_r, u_w = reference.units, window.units
    distance = ks_distance(reference, window)
    effective = max(1, round(u_r * u_w / (u_r + u_w)))
    threshold = float(stats.kstwo.isf(alpha, effective))
    p_value = float(stats.kstwo.sf(distance, effective))
    effect = {"name": "mean shift (reference SD)", "value": None, "low": None, "high": None}
    scale = reference.std if reference.std > 0 else window.std
    if reference.values and window.values and scale > 0:
        shift = (window.mean - reference.mean) / scale
        error = math.sqrt(window.std ** 2 / window.values + reference.std ** 2 / reference.values) / scale
        effect.update(value=shift, low=shift - Z95 * error, high=shift + Z95 * error)
    outside = None
    if reference.values and window.values:
        below_min = _bounds(window, np.array([np.nextafter(reference.minimum, -np.inf)]))[0][0] - window.missing
        above_max = window.values - _bounds(window, np.array([reference.maximum]))[1][0] + window.missing
        outside = max(0.0, below_min) / u_w + max(0.0, above_max) / u_w
    return FeatureResult(name, reference.kind, "ks", distance, threshold, p_value, alpha, distance > threshold,
                         {"name": "KS distance", "value": distance}, effect,
                         (reference.missing / u_r, window.missing / u_w), None, outside, (u_r, u_w))


def _cells(reference: CategoricalSummary, window: CategoricalSummary):
    if reference.hash_buckets is not None or window.hash_buckets is not None:
        buckets = reference.hash_buckets or window.hash_buckets
        reference, window = reference.hashed(buckets), window.hashed(buckets)
    labels = list(dict.fromkeys(list(reference.labels) + list(window.labels)))
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((2, len(labels) + 1))
    for row, summary in enumerate((reference, window)):
        np.add.at(counts[row], [index[label] for label in summary.labels], summary.counts)
        counts[row, -1] = summary.missing
    labels.append(None)  # the missing cell
    keep = counts.sum(axis=0) > 0
    return [label for label, kept in zip(labels, keep) if kept], counts[:, keep], reference, window


def _pool_rare(labels: list, counts: np.ndarray) -> Tuple[list, np.ndarray]:
    """Pools the cells too rare to test alone (decided on the pooled counts only)."""
    pooled = counts.sum(axis=0)
    smaller, total = counts.sum(axis=1).min(), pooled.sum()
    order = np.argsort(-pooled, kind="stable")
    own = [i for i in order if pooled[i] * smaller / total >= MIN_EXPECTED][:MAX_CELLS - 1]
    rest = np.setdiff1d(np.arange(len(labels)), own)
    cells = [labels[i] for i in own]
    columns = [counts[:, own]]
    if len(rest):
        cells.append("(rare values)")
        columns.append(counts[:, rest].sum(axis=1, keepdims=True))
    return cells, np.concatenate(columns, axis=1)


def _cell_tests(pooled_counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each cell's two-sided exact p-value, given its pooled count (the window's count is hypergeometric under
    no change), and that p as a z-score."""
    reference, window = pooled_counts
    total, n_w = int(pooled_counts.sum()), int(window.sum())
    pooled = (reference + window).astype(np.int64)
    lower = stats.hypergeom.cdf(window, total, pooled, n_w)
    upper = stats.hypergeom.sf(window - 1, total, pooled, n_w)
    p_values = np.clip(2 * np.minimum(lower, upper), 1e-300, 1.0)
    return p_values, stats.norm.isf(p_values / 2)


def _jsd(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    mean = (p + q) / 2

    def kl(a):
        nonzero = a > 0
        return float((a[nonzero] * np.log2(a[nonzero] / mean[nonzero])).sum())

    return (kl(p) + kl(q)) / 2


def _categorical(name: str, reference: CategoricalSummary, window: CategoricalSummary,
                 alpha: float) -> FeatureResult:
    labels, counts, reference, window = _cells(reference, window)
    u_r, u_w = counts[0].sum(), counts[1].sum()
    missing = (reference.missing / u_r, window.missing / u_w)
    new = counts[1][counts[0] == 0].sum() / u_w
    note = f"compared on {reference.hash_buckets} hash buckets of its values" if reference.hash_buckets else ""
    cells, pooled_counts = _pool_rare(labels, np.round(counts).astype(np.int64))
    measure = {"name": "Jensen-Shannon divergence", "value": _jsd(counts[0], counts[1])}
    if len(cells) < 2:
        effect = {"name": "largest share change (points)", "value": 0.0, "low": 0.0, "high": 0.0, "value_of": None}
        return FeatureResult(name, reference.kind, "max_z", 0.0, math.inf, 1.0, alpha, False, measure, effect,
                             missing, new, None, (u_r, u_w), note or "one value only")
    n_r, n_w = float(pooled_counts[0].sum()), float(pooled_counts[1].sum())
    p_values, z_scores = _cell_tests(pooled_counts)
    # Bonferroni over the cells: at alpha/cells the union bound is all but exact (two cells' extremes
    # almost never coincide), and each cell's test is exact at any count.
    score = float(z_scores.max())
    threshold = float(stats.norm.isf(alpha / (2 * len(cells))))
    p_value = float(min(1.0, len(cells) * p_values.min()))
    top = int(z_scores.argmax())
    p_w, p_r = pooled_counts[1, top] / n_w, pooled_counts[0, top] / n_r
    error = math.sqrt(p_w * (1 - p_w) / n_w + p_r * (1 - p_r) / n_r)
    label = cells[top]
    effect = {"name": "largest share change (points)", "value": 100 * (p_w - p_r),
              "low": 100 * (p_w - p_r - Z95 * error), "high": 100 * (p_w - p_r + Z95 * error),
              "value_of": "(missing)" if label is None else
              (f"hash bucket {label}" if reference.hash_buckets else str(label))}
    return FeatureResult(name, reference.kind, "max_z", score, threshold, p_value, alpha, score > threshold,
                         measure, effect, missing, new, None, (u_r, u_w), note)


def compare_feature(name: str, reference, window, alpha: float) -> FeatureResult:
    if isinstance(reference, NumericSummary) != isinstance(window, NumericSummary):
        raise ValueError(f"feature '{name}' is {reference.kind} in one set of statistics and {window.kind} in "
                         "the other")
    if isinstance(reference, NumericSummary):
        return _numeric(name, reference, window, alpha)
    return _categorical(name, reference, window, alpha)


@dataclasses.dataclass
class Comparison:
    name: str                 # e.g. "skew", "drift vs previous window", "drift vs training"
    reference: str
    window: str
    reference_rows: int
    window_rows: int
    alpha: float
    feature_alpha: float
    features: List[FeatureResult]
    missing_features: List[str] = dataclasses.field(default_factory=list)

    @property
    def drifted(self) -> List[FeatureResult]:
        return [f for f in self.features if f.drift]


def compare(name: str, reference: Profile, window: Profile, features: Sequence[str], alpha: float,
            max_feature_alpha: float) -> Comparison:
    """Every feature of `features` in both profiles, at one family-wise alpha."""
    present = [f for f in features if f in reference.features and f in window.features]
    missing = [f for f in features if f not in present]
    per_feature = feature_alpha(alpha, max_feature_alpha, len(present))
    results = [compare_feature(f, reference.features[f], window.features[f], per_feature) for f in present]
    return Comparison(name, reference.name, window.name, reference.num_rows, window.num_rows, alpha, per_feature,
                      results, missing)

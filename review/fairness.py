"""The fairness view of an evaluation: per group of each grouping feature, its count, selection
rate, TPR, FPR and FNR (TFMA's metrics at the decision threshold) with 95% Wilson intervals from the
group's confusion matrix, and the demographic-parity and equalized-odds differences between groups:
the largest gap TFMA computed over the pairs of groups of at least `min_group_size` (the values the
Evaluator's gate compared with its bounds)."""
import math
from typing import List, Optional

from config import metrics as names
from review.evaluation import Evaluation, gap_bounds, gap_settings, slice_label

Z_95 = 1.959963984540054
# rate -> (successes, trials) in the group's confusion matrix
RATE_COUNTS = {
    "selection_rate": (lambda c: c.tp + c.fp, lambda c: c.total),
    "true_positive_rate": (lambda c: c.tp, lambda c: c.tp + c.fn),
    "false_positive_rate": (lambda c: c.fp, lambda c: c.fp + c.tn),
    "false_negative_rate": (lambda c: c.fn, lambda c: c.tp + c.fn),
}


def wilson_interval(successes: float, trials: float, z: float = Z_95) -> Optional[List[float]]:
    """The Wilson score interval of a proportion; None without trials."""
    if trials <= 0:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _groups(evaluation: Evaluation, feature: str):
    return sorted((key for key in evaluation.metrics if len(key) == 1 and key[0][0] == feature), key=str)


def _largest_gap(evaluation: Evaluation, feature: str, gap: str, eligible: set) -> dict:
    best = {"value": None, "groups": None}
    for (a, b), _ in evaluation.cross.items():
        if a not in eligible or b not in eligible or a[0][0] != feature or b[0][0] != feature:
            continue
        value = evaluation.cross_value((a, b), gap)
        if value is not None and (best["value"] is None or value > best["value"]):
            best = {"value": value, "groups": [slice_label(a), slice_label(b)]}
    return best


def fairness(evaluation: Evaluation, features: List[str], sensitive: List[str], min_count: int) -> Optional[dict]:
    """None when the evaluation has no gap metrics (no fairness configured for that run)."""
    settings = gap_settings(evaluation)
    if settings is None:
        return None
    bounds = gap_bounds(evaluation)
    min_group_size = settings["min_group_size"]
    grouped = sorted({a[0][0] for a, _ in evaluation.cross if len(a) == 1})
    result = {"decision_threshold": settings["decision_threshold"], "min_group_size": min_group_size,
              "min_count": min_count, "features": []}
    for feature in [f for f in features if f in grouped] + [f for f in grouped if f not in features]:
        groups, eligible, hidden = [], set(), 0
        for key in _groups(evaluation, feature):
            counts = evaluation.counts(key)
            count = evaluation.value(key, names.EXAMPLE_COUNT)
            if counts is None or count is None or count < min_count:
                hidden += 1
                continue
            sufficient = counts.total >= min_group_size
            if sufficient:
                eligible.add(key)
            group = {"group": str(key[0][1]), "slice": slice_label(key), "count": count, "sufficient": sufficient}
            for rate, (successes, trials) in RATE_COUNTS.items():
                group[rate] = {"value": evaluation.value(key, rate),
                               "interval": wilson_interval(successes(counts), trials(counts))}
            groups.append(group)
        gaps = {}
        for gap in names.GAPS:
            largest = _largest_gap(evaluation, feature, gap, eligible)
            bound = bounds.get((gap, feature))
            gaps[gap] = {**largest, "bound": bound,
                         "passed": None if bound is None or largest["value"] is None else largest["value"] <= bound}
        result["features"].append({"feature": feature, "sensitive": feature in sensitive,
                                   "gated": any((gap, feature) in bounds for gap in names.GAPS),
                                   "groups": groups, "hidden_groups": hidden, "gaps": gaps})
    return result

"""Gaps between two groups of a feature as TFMA metrics, for `cross_slice_thresholds`: the Evaluator
computes them on every pair of slices of a cross-slicing spec and blesses only within the bounds.

Definitions as fairlearn's (`demographic_parity_difference`, `equalized_odds_difference`), at the
decision threshold (a score above it is a positive prediction), for one pair of groups; the largest
over all pairs is the feature's difference. A pair with a group smaller than `min_group_size` is not
compared (its gap is recorded as 0), so small groups neither pass nor fail the gate. Loaded by the
Evaluator by module path (`MetricConfig.module`)."""
import dataclasses
import math
from typing import Any, Dict, Optional

from tensorflow_model_analysis.metrics import binary_confusion_matrices, metric_types, metric_util

from config.metrics import DEMOGRAPHIC_PARITY, EQUALIZED_ODDS


@dataclasses.dataclass(frozen=True)
class GroupRates:
    """A group's counts at the decision threshold and the rates the gaps compare."""
    tp: float
    fp: float
    tn: float
    fn: float

    @classmethod
    def from_matrices(cls, matrices, index: int = 0) -> "GroupRates":
        return cls(matrices.tp[index], matrices.fp[index], matrices.tn[index], matrices.fn[index])

    @property
    def count(self) -> float:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def selection_rate(self) -> float:
        return _ratio(self.tp + self.fp, self.count)

    @property
    def true_positive_rate(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def false_positive_rate(self) -> float:
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def false_negative_rate(self) -> float:
        return _ratio(self.fn, self.tp + self.fn)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _difference(a: float, b: float) -> float:
    """|a - b|; 0 when either rate is undefined (a group without positives has no TPR)."""
    return 0.0 if math.isnan(a) or math.isnan(b) else abs(a - b)


def demographic_parity_difference(a: GroupRates, b: GroupRates) -> float:
    return _difference(a.selection_rate, b.selection_rate)


def equalized_odds_difference(a: GroupRates, b: GroupRates) -> float:
    return max(_difference(a.true_positive_rate, b.true_positive_rate),
               _difference(a.false_positive_rate, b.false_positive_rate))


class _GroupGap(metric_types.Metric):
    NAME = ""

    def __init__(self, decision_threshold: float = 0.5, min_group_size: int = 1, name: Optional[str] = None):
        super().__init__(metric_util.merge_per_key_computations(self._computations),
                         decision_threshold=decision_threshold, min_group_size=min_group_size, name=name)

    def _default_name(self) -> str:
        return self.NAME

    @staticmethod
    def gap(a: GroupRates, b: GroupRates) -> float:
        raise NotImplementedError

    def _computations(self, decision_threshold: float, min_group_size: int, name: str, eval_config=None,
                      model_name: str = "", output_name: str = "", sub_key=None, aggregation_type=None,
                      class_weights=None, example_weighted: bool = False) -> metric_types.MetricComputations:
        gap_key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                         sub_key=sub_key, example_weighted=example_weighted,
                                         aggregation_type=aggregation_type)
        computations = binary_confusion_matrices.binary_confusion_matrices(
            thresholds=[decision_threshold], eval_config=eval_config, model_name=model_name,
            output_name=output_name, sub_key=sub_key, aggregation_type=aggregation_type,
            class_weights=class_weights, example_weighted=example_weighted)
        matrices_key = computations[-1].keys[-1]
        gap = self.gap

        def compare(baseline: Dict[Any, Any], comparison: Dict[Any, Any]) -> Dict[Any, float]:
            a = GroupRates.from_matrices(baseline[matrices_key])
            b = GroupRates.from_matrices(comparison[matrices_key])
            return {gap_key: gap(a, b) if min(a.count, b.count) >= min_group_size else 0.0}

        computations.append(metric_types.CrossSliceMetricComputation(keys=[gap_key], cross_slice_comparison=compare))
        return computations


class DemographicParityDifference(_GroupGap):
    """|selection rate of group a - selection rate of group b|."""
    NAME = DEMOGRAPHIC_PARITY
    gap = staticmethod(demographic_parity_difference)


class EqualizedOddsDifference(_GroupGap):
    """The larger of the groups' TPR and FPR differences."""
    NAME = EQUALIZED_ODDS
    gap = staticmethod(equalized_odds_difference)

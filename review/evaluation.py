"""The Evaluator's results for review, as TFMA wrote them: metrics on every slice for the candidate
and the baseline, their differences, the validation result (every failure with its value, threshold
and baseline), the plots, and the gaps between groups. Thresholds come from the EvalConfig the
evaluation itself ran with (its `eval_config.json`), so an older run is judged by its own rules."""
import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Tuple

from google.protobuf import json_format

from config import LOWER_IS_BETTER, metrics as names
from review import tfma_outputs

SliceKey = Tuple[Tuple[str, object], ...]
CrossKey = Tuple[SliceKey, SliceKey]
OVERALL: SliceKey = ()
CLASS_NAMES = {**{cls: name for name, cls in names.METRIC_CLASSES.items()},
               **{cls: name for name, cls in names.GAP_CLASSES.items()}}


@dataclasses.dataclass(frozen=True)
class Key:
    """A metric of one model on one slice: `diff` is TFMA's candidate-minus-baseline value."""
    name: str
    model: str
    diff: bool = False


def slice_key(proto) -> SliceKey:
    items = []
    for single in proto.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind) if kind else None
        items.append((single.column, value.decode("utf-8", "replace") if isinstance(value, bytes) else value))
    return tuple(items)


def slice_label(key: SliceKey) -> str:
    return ", ".join(f"{column}={value}" for column, value in key) or "(all eval rows)"


def number(value) -> Optional[float]:
    """A MetricValue's double, None when absent or undefined (NaN: e.g. AUC of a one-class slice)."""
    if value is None or not value.HasField("double_value"):
        return None
    result = value.double_value.value
    return None if math.isnan(result) or math.isinf(result) else result


@dataclasses.dataclass
class Counts:
    tp: float
    fp: float
    tn: float
    fn: float

    @property
    def total(self) -> float:
        return self.tp + self.fp + self.tn + self.fn


@dataclasses.dataclass
class Evaluation:
    uri: str
    eval_config: object                       # tfma EvalConfig proto
    candidate: str                            # model name ("" without a baseline)
    baseline: Optional[str]
    metrics: Dict[SliceKey, Dict[Key, object]]
    cross: Dict[CrossKey, Dict[Key, object]]
    plots: Dict[SliceKey, Dict[str, object]]  # model -> PlotData with the slice's plots merged
    validation: object                        # tfma ValidationResult proto

    def value(self, key: SliceKey, name: str, model: Optional[str] = None, diff: bool = False) -> Optional[float]:
        model = self.candidate if model is None else model
        return number(self.metrics.get(key, {}).get(Key(name, model, diff)))

    def cross_value(self, key: CrossKey, name: str, model: Optional[str] = None) -> Optional[float]:
        model = self.candidate if model is None else model
        return number(self.cross.get(key, {}).get(Key(name, model)))

    def counts(self, key: SliceKey, model: Optional[str] = None) -> Optional[Counts]:
        """The confusion matrix at the decision threshold."""
        model = self.candidate if model is None else model
        value = self.metrics.get(key, {}).get(Key(names.CONFUSION_MATRIX, model))
        if value is None or not value.confusion_matrix_at_thresholds.matrices:
            return None
        matrix = value.confusion_matrix_at_thresholds.matrices[0]
        return Counts(matrix.true_positives, matrix.false_positives, matrix.true_negatives, matrix.false_negatives)

    def models(self) -> List[str]:
        return [self.candidate] + ([self.baseline] if self.baseline else [])


def load(evaluation_uri: str) -> Evaluation:
    pb = tfma_outputs.protos()
    with open(os.path.join(evaluation_uri, "eval_config.json")) as handle:
        eval_config = json_format.ParseDict(json.load(handle)["evalConfig"], pb.config_pb2.EvalConfig(),
                                            ignore_unknown_fields=True)
    baseline = next((spec.name for spec in eval_config.model_specs if spec.is_baseline), None)
    candidate = next((spec.name for spec in eval_config.model_specs if not spec.is_baseline), "")
    metrics: Dict[SliceKey, Dict[Key, object]] = {}
    cross: Dict[CrossKey, Dict[Key, object]] = {}
    for record in tfma_outputs.load_metrics(evaluation_uri):
        values = {Key(kv.key.name, kv.key.model_name, kv.key.is_diff): kv.value for kv in record.metric_keys_and_values}
        if record.HasField("cross_slice_key"):
            pair = (slice_key(record.cross_slice_key.baseline_slice_key),
                    slice_key(record.cross_slice_key.comparison_slice_key))
            cross[pair] = values
        else:
            metrics[slice_key(record.slice_key)] = values
    plots: Dict[SliceKey, Dict[str, object]] = {}
    for record in tfma_outputs.load_plots(evaluation_uri):
        if record.HasField("cross_slice_key"):
            continue
        merged = plots.setdefault(slice_key(record.slice_key), {})
        for kv in record.plot_keys_and_values:
            merged.setdefault(kv.key.model_name, pb.metrics_for_slice_pb2.PlotData()).MergeFrom(kv.value)
    return Evaluation(evaluation_uri, eval_config, candidate, baseline, metrics, cross, plots,
                      tfma_outputs.load_validation_result(evaluation_uri))


# ---- thresholds ---------------------------------------------------------------------------------

def _metric_name(metric_config) -> str:
    settings = json.loads(metric_config.config) if metric_config.config else {}
    return settings.get("name") or CLASS_NAMES.get(metric_config.class_name, metric_config.class_name)


def thresholds(evaluation: Evaluation) -> Dict[str, dict]:
    """metric -> {"lower", "upper", "max_drop"} on the whole eval split, from the run's EvalConfig."""
    found: Dict[str, dict] = {}
    for spec in evaluation.eval_config.metrics_specs:
        for metric in spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                bounds = found.setdefault(_metric_name(metric), {})
                threshold = per_slice.threshold
                if threshold.HasField("value_threshold"):
                    value = threshold.value_threshold
                    if value.HasField("lower_bound"):
                        bounds["lower"] = value.lower_bound.value
                    if value.HasField("upper_bound"):
                        bounds["upper"] = value.upper_bound.value
                if threshold.HasField("change_threshold") and threshold.change_threshold.HasField("absolute"):
                    bounds["max_drop"] = abs(threshold.change_threshold.absolute.value)
    return found


def gap_bounds(evaluation: Evaluation) -> Dict[Tuple[str, str], float]:
    """(gap metric, feature) -> the largest gap allowed, from the cross-slice thresholds."""
    found = {}
    for spec in evaluation.eval_config.metrics_specs:
        for metric in spec.metrics:
            for cross_threshold in metric.cross_slice_thresholds:
                value = cross_threshold.threshold.value_threshold
                if not value.HasField("upper_bound"):
                    continue
                for cross_spec in cross_threshold.cross_slicing_specs:
                    for feature in cross_spec.baseline_spec.feature_keys:
                        found[(_metric_name(metric), feature)] = value.upper_bound.value
    return found


def gap_settings(evaluation: Evaluation) -> Optional[dict]:
    """{"decision_threshold", "min_group_size"} of the gap metrics, None when there are none."""
    for spec in evaluation.eval_config.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name in CLASS_NAMES and CLASS_NAMES[metric.class_name] in names.GAPS:
                return json.loads(metric.config)
    return None


def _worse(name: str, delta: float, max_drop: float) -> bool:
    return delta > max_drop if name in LOWER_IS_BETTER else delta < -max_drop


def describe_bounds(bounds: dict) -> str:
    parts = []
    if "lower" in bounds:
        parts.append(f">= {bounds['lower']:g}")
    if "upper" in bounds:
        parts.append(f"<= {bounds['upper']:g}")
    if "max_drop" in bounds:
        parts.append(f"drop <= {bounds['max_drop']:g} vs baseline")
    return ", ".join(parts)


# ---- the whole eval split -------------------------------------------------------------------------

def overall_metrics(evaluation: Evaluation, metric_names: List[str]) -> Dict[str, dict]:
    """metric -> candidate, baseline, delta (TFMA's diff) and the run's thresholds on all eval rows."""
    bounds = thresholds(evaluation)
    failed = {f["metric"] for f in validation_failures(evaluation) if f["slice"] == slice_label(OVERALL)}
    rows = {}
    for name in metric_names:
        candidate = evaluation.value(OVERALL, name)
        if candidate is None and Key(name, evaluation.candidate) not in evaluation.metrics.get(OVERALL, {}):
            continue
        rows[name] = {
            "candidate": candidate,
            "baseline": evaluation.value(OVERALL, name, evaluation.baseline) if evaluation.baseline else None,
            "delta": evaluation.value(OVERALL, name, diff=True) if evaluation.baseline else None,
            "threshold": describe_bounds(bounds.get(name, {})) or None,
            "bounds": bounds.get(name, {}),
            "passed": name not in failed,
        }
    return rows


def _threshold_dict(threshold) -> dict:
    if threshold.HasField("value_threshold"):
        value = threshold.value_threshold
        result = {"kind": "value"}
        if value.HasField("lower_bound"):
            result["lower"] = value.lower_bound.value
        if value.HasField("upper_bound"):
            result["upper"] = value.upper_bound.value
        return result
    change = threshold.change_threshold
    return {"kind": "change", "max_drop": abs(change.absolute.value) if change.HasField("absolute") else None}


def _failure_text(failure: dict) -> str:
    metric, where = failure["metric"], failure["slice"]
    threshold, value = failure["threshold"], failure["value"]
    baseline = failure.get("baseline")
    if failure["kind"] == "missing":
        return f"{metric}: {failure['message']}"
    if value is None:
        return f"{metric} on {where}: not computed ({failure['message'] or 'undefined value'})"
    if threshold["kind"] == "change":
        direction = "rose" if metric in LOWER_IS_BETTER else "dropped"
        was = f" ({baseline:.4f} -> {failure['candidate']:.4f})" if baseline is not None else ""
        return (f"{metric} on {where} {direction} by {abs(value):.4f} vs the baseline{was}, "
                f"more than the allowed {threshold['max_drop']:g}")
    bound = (f"below the lower bound {threshold['lower']:g}" if "lower" in threshold and value < threshold["lower"]
             else f"above the bound {threshold.get('upper', float('nan')):g}")
    where = f"between {failure['groups'][0]} and {failure['groups'][1]}" if failure["kind"] == "gap" else f"on {where}"
    text = f"{metric} {where} is {value:.4f}, {bound}"
    return text + (f" (baseline: {baseline:.4f})" if baseline is not None else "")


def validation_failures(evaluation: Evaluation) -> List[dict]:
    """Every reason the validation failed: each threshold a metric missed on a slice or a pair of
    groups (value, threshold, candidate and baseline values), and each slicing spec TFMA found no
    data for."""
    result = evaluation.validation
    failures = []
    for per_slice in result.metric_validations_per_slice:
        if per_slice.HasField("cross_slice_key"):
            pair = (slice_key(per_slice.cross_slice_key.baseline_slice_key),
                    slice_key(per_slice.cross_slice_key.comparison_slice_key))
            if str(pair[0]) > str(pair[1]) and (pair[1], pair[0]) in evaluation.cross:
                continue  # the gaps are symmetric: each pair of groups once
            where = f"{slice_label(pair[0])} vs {slice_label(pair[1])}"
            values, cross = evaluation.cross.get(pair, {}), True
        else:
            key = slice_key(per_slice.slice_key)
            where, values, cross = slice_label(key), evaluation.metrics.get(key, {}), False
        for failure in per_slice.failures:
            name, diff = failure.metric_key.name, failure.metric_key.is_diff
            value = failure.metric_value.double_value.value if failure.metric_value.HasField("double_value") else None
            item = {
                "metric": name,
                "slice": where,
                "kind": "gap" if cross else ("change" if diff else "value"),
                "value": None if value is None or math.isnan(value) else value,
                "threshold": _threshold_dict(failure.metric_threshold),
                "candidate": number(values.get(Key(name, evaluation.candidate))),
                "baseline": number(values.get(Key(name, evaluation.baseline))) if evaluation.baseline else None,
                "message": failure.message.strip(),
            }
            if cross:
                item["groups"] = [slice_label(pair[0]), slice_label(pair[1])]
                item["feature"] = ", ".join(column for column, _ in pair[0])
            item["text"] = _failure_text(item)
            failures.append(item)
    for spec in result.missing_slices:
        keys = list(spec.feature_keys)
        failures.append({"metric": "slice", "slice": ", ".join(keys) or "(all eval rows)", "kind": "missing",
                         "value": None, "threshold": None, "candidate": None, "baseline": None,
                         "message": f"no eval rows for the slice {keys or 'of all rows'}",
                         "text": f"no eval rows for the thresholded slice {keys or '(all rows)'}"})
    for spec in result.missing_cross_slices:
        keys = list(spec.baseline_spec.feature_keys)
        failures.append({"metric": "groups", "slice": ", ".join(keys), "kind": "missing", "value": None,
                         "threshold": None, "candidate": None, "baseline": None,
                         "message": f"no pairs of groups of {keys}",
                         "text": f"no pairs of groups of {keys} to compare"})
    return failures


# ---- slices -------------------------------------------------------------------------------------

def slices(evaluation: Evaluation, metric_names: List[str], min_slice_size: int, min_count: int) -> dict:
    """Every slice: example count, candidate beside baseline with TFMA's delta per metric, regressed
    metrics (worse than the baseline by more than their max_drop), slices below `min_slice_size` flagged
    as insufficient (not ranked), slices below `min_count` left out (privacy) and only counted."""
    bounds = thresholds(evaluation)
    primary = metric_names[0] if metric_names else None
    rows, hidden = [], {}
    for key, values in evaluation.metrics.items():
        count = evaluation.value(key, names.EXAMPLE_COUNT)
        feature = ", ".join(column for column, _ in key)
        if key != OVERALL and (count is None or count < min_count):
            hidden[feature] = hidden.get(feature, 0) + 1
            continue
        metrics = {}
        regressed = []
        for name in metric_names:
            candidate = evaluation.value(key, name)
            baseline = evaluation.value(key, name, evaluation.baseline) if evaluation.baseline else None
            delta = evaluation.value(key, name, diff=True) if evaluation.baseline else None
            metrics[name] = {"candidate": candidate, "baseline": baseline, "delta": delta}
            drop = bounds.get(name, {}).get("max_drop")
            if delta is not None and drop is not None and count >= min_slice_size and _worse(name, delta, drop):
                regressed.append(name)
        rows.append({"slice": slice_label(key), "feature": feature or "(all)", "key": [list(item) for item in key],
                     "count": count, "sufficient": key == OVERALL or count >= min_slice_size,
                     "metrics": metrics, "regressed": regressed, "rank": None})
    for feature in {row["feature"] for row in rows} - {"(all)"}:
        ranked = [row for row in rows if row["feature"] == feature and row["sufficient"]
                  and primary and row["metrics"][primary]["candidate"] is not None]
        ranked.sort(key=lambda row: row["metrics"][primary]["candidate"], reverse=primary in LOWER_IS_BETTER)
        for rank, row in enumerate(ranked, 1):
            row["rank"] = rank
    rows.sort(key=lambda row: (row["feature"] != "(all)", row["feature"], row["rank"] is None,
                               row["rank"] or 0, [(type(v).__name__ == "str", v) for _, v in row["key"]]))
    return {"metrics": metric_names, "primary": primary, "min_slice_size": min_slice_size, "rows": rows,
            "hidden": hidden, "min_count": min_count, "has_baseline": evaluation.baseline is not None}


# ---- plots --------------------------------------------------------------------------------------

def _curve(plot_data) -> List[dict]:
    return [{"threshold": m.threshold, "tp": m.true_positives, "fp": m.false_positives, "tn": m.true_negatives,
             "fn": m.false_negatives, "precision": m.precision, "recall": m.recall,
             "false_positive_rate": m.false_positive_rate}
            for m in plot_data.confusion_matrix_at_thresholds.matrices]


def _calibration(plot_data) -> List[dict]:
    buckets = []
    for bucket in plot_data.calibration_histogram_buckets.buckets:
        count = bucket.num_weighted_examples.value
        if count <= 0:
            continue
        buckets.append({"low": bucket.lower_threshold_inclusive, "high": bucket.upper_threshold_exclusive,
                        "count": count, "mean_prediction": bucket.total_weighted_refined_prediction.value / count,
                        "mean_label": bucket.total_weighted_label.value / count})
    return buckets


def plots(evaluation: Evaluation, task: str, min_count: int) -> dict:
    """What the review draws for all eval rows (candidate, and baseline where there is one)."""
    overall = evaluation.plots.get(OVERALL, {})
    result: dict = {"task": task}
    if task == "binary":
        result["curves"] = {model or "candidate": _curve(data) for model, data in overall.items()
                            if data.confusion_matrix_at_thresholds.matrices}
        result["calibration"] = {model or "candidate": _calibration(data) for model, data in overall.items()
                                 if data.calibration_histogram_buckets.buckets}
        matrices = {}
        for model in evaluation.models():
            counts = evaluation.counts(OVERALL, model)
            if counts is not None:
                matrices[model or "candidate"] = dataclasses.asdict(counts)
        result["confusion_matrix"] = matrices
        settings = gap_settings(evaluation)
        threshold = next((json.loads(m.config)["thresholds"][0] for s in evaluation.eval_config.metrics_specs
                          for m in s.metrics if m.class_name == "ConfusionMatrixAtThresholds"), None)
        result["decision_threshold"] = threshold if threshold is not None else (settings or {}).get(
            "decision_threshold")
    elif task == "multiclass":
        entries = {}
        for model, data in overall.items():
            matrices = data.multi_class_confusion_matrix_at_thresholds.matrices
            if matrices:
                entries[model or "candidate"] = [
                    {"actual": e.actual_class_id, "predicted": e.predicted_class_id, "count": e.num_weighted_examples}
                    for e in matrices[0].entries]
        result["confusion_matrix"] = entries
    else:
        residuals = []
        for key in evaluation.metrics:
            count = evaluation.value(key, names.EXAMPLE_COUNT)
            prediction = evaluation.value(key, names.MEAN_PREDICTION)
            label = evaluation.value(key, names.MEAN_LABEL)
            if prediction is None or label is None or (key != OVERALL and (count or 0) < min_count):
                continue
            residuals.append({"slice": slice_label(key), "feature": ", ".join(c for c, _ in key) or "(all)",
                              "count": count, "mean_prediction": prediction, "mean_label": label,
                              "residual": prediction - label})
        result["residuals"] = sorted(residuals, key=lambda r: (r["feature"] != "(all)", r["feature"], r["slice"]))
    return result


def failure_reasons(failures: List[dict]) -> List[str]:
    """The failures in a few lines: each missed threshold, and for each gap metric and feature the
    largest gap and how many pairs of groups were beyond the bound."""
    reasons, gaps = [], {}
    for failure in failures:
        if failure["kind"] == "gap":
            gaps.setdefault((failure["metric"], failure["feature"]), []).append(failure)
        else:
            reasons.append(failure["text"])
    for (metric, feature), items in gaps.items():
        worst = max(items, key=lambda f: f["value"] if f["value"] is not None else -1)
        others = f"; {len(items) - 1} other pair(s) beyond it too" if len(items) > 1 else ""
        reasons.append(f"{worst['text']}{others}")
    return reasons

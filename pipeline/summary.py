"""The end-of-run summary, read back from ML Metadata and the artifacts it points to."""
import json
import os
from typing import Optional

from metadata import runs, store
from config import LOWER_IS_BETTER, PipelineConfig


def _int_property(artifact, name: str) -> Optional[int]:
    if artifact is None or name not in artifact.custom_properties:
        return None
    return artifact.custom_properties[name].int_value


def _rows_per_split(statistics) -> dict:
    import tensorflow_data_validation as tfdv

    rows = {}
    for split in json.loads(statistics.properties["split_names"].string_value):
        stats = tfdv.load_stats_binary(os.path.join(statistics.uri, f"Split-{split}", "FeatureStats.pb"))
        rows[split] = stats.datasets[0].num_examples
    return rows


def _slices(uri: str, model_name: Optional[str]) -> list:
    """[(slice key, {metric: value})] of one model in an Evaluator output."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(uri, model_name=model_name)
    slices = []
    for slice_key, metrics in result.slicing_metrics:
        values = next(iter(next(iter(metrics.values())).values()))
        slices.append((slice_key, {name: value["doubleValue"] for name, value in values.items()
                                   if "doubleValue" in value}))
    return slices


def _overall_metrics(uri: str, model_name: Optional[str]) -> dict:
    return next((values for slice_key, values in _slices(uri, model_name) if slice_key == ()), {})


def _has_baseline(run: dict) -> bool:
    """Whether the run's Evaluator compared with a baseline: a ServingBaseline output that holds a
    version (local runs, Kubeflow), or a model that the resolver found (Vertex)."""
    from pipeline.pipeline import RESOLVER_ID, SERVING_BASELINE_ID

    if SERVING_BASELINE_ID in run:
        model = run[SERVING_BASELINE_ID].output("model")
        return model is not None and _int_property(model, "serving_version") not in (None, 0)
    return RESOLVER_ID in run and bool(run[RESOLVER_ID].outputs.get("model"))


def slice_metrics(config: PipelineConfig) -> list:
    """The candidate's metrics on every slice of the latest evaluation, for reviewers:
    [{"slice": "trip_start_hour=7", "auc": ..., ...}], the whole split first."""
    run = runs.latest_run(store.open_store(config), config.name)
    has_baseline = _has_baseline(run)
    rows = [{"slice": ", ".join(f"{k}={v}" for k, v in key) or "(all eval rows)", **values}
            for key, values in _slices(run["Evaluator"].output("evaluation").uri,
                                       "candidate" if has_baseline else None)]
    return sorted(rows, key=lambda row: (row["slice"] != "(all eval rows)", row["slice"]))


def _metrics(config: PipelineConfig, evaluation_uri: str, has_baseline: bool) -> dict:
    candidate = _overall_metrics(evaluation_uri, "candidate" if has_baseline else None)
    baseline = _overall_metrics(evaluation_uri, "baseline") if has_baseline else {}
    rows = {}
    for name, value in candidate.items():
        if name.endswith("_diff") or name == "example_count":
            continue
        bound = config.evaluation.thresholds.get(name)
        change = config.evaluation.change_thresholds.get(name)
        rows[name] = {
            "candidate": value,
            "baseline": baseline.get(name),
            "threshold": None if bound is None else (f"<= {bound}" if name in LOWER_IS_BETTER else f">= {bound}"),
            "max_drop": None if change is None else change.max_drop,
        }
    return rows


def _validation_failures(evaluation_uri: str) -> list:
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.append(f"{failure.metric_key.name}: {failure.message or 'threshold not met'} "
                            f"(value {failure.metric_value.double_value.value:.4f})")
    return failures


def collect(config: PipelineConfig) -> dict:
    run = runs.latest_run(store.open_store(config), config.name)
    summary = {
        "pipeline": config.name,
        "components": [{"id": c.node_id, "cached": c.cached, "seconds": c.seconds} for c in run.values()],
    }
    if "StatisticsGen" in run:
        summary["rows"] = _rows_per_split(run["StatisticsGen"].output("statistics"))
    gate_report = run["AnomalyGate"].output("report") if "AnomalyGate" in run else None
    if gate_report is not None:
        with open(os.path.join(gate_report.uri, "anomaly_report.json")) as handle:
            summary["anomalies"] = json.load(handle)["findings"]
    if "Evaluator" in run:
        evaluation_uri = run["Evaluator"].output("evaluation").uri
        has_baseline = _has_baseline(run)
        summary["has_baseline"] = has_baseline
        summary["metrics"] = _metrics(config, evaluation_uri, has_baseline)
        summary["validation_failures"] = _validation_failures(evaluation_uri)
        summary["blessed"] = bool(_int_property(run["Evaluator"].output("blessing"), "blessed"))
    if "Pusher" in run:
        pushed = run["Pusher"].output("pushed_model")
        summary["pushed"] = bool(_int_property(pushed, "pushed"))
        if summary["pushed"]:
            summary["pushed_path"] = pushed.custom_properties["pushed_destination"].string_value
            summary["pushed_version"] = pushed.custom_properties["pushed_version"].string_value
    return summary


def _format_value(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_summary(summary: dict, seconds: float) -> str:
    components = summary["components"]
    cached = sum(c["cached"] for c in components)
    lines = [f"Summary of '{summary['pipeline']}': {len(components)} components in {seconds:.1f} s "
             f"({cached} reused from cache)"]
    if "rows" in summary:
        lines.append("  rows        " + ", ".join(f"{split} {n:,}" for split, n in summary["rows"].items()))
    if "anomalies" in summary:
        findings = summary["anomalies"]
        lines.append("  anomalies   " + ("none" if not findings else
                                         f"{len(findings)} (allowed by config): " +
                                         "; ".join(f"{f['feature']} {f['kind']}" for f in findings)))
    if "metrics" in summary:
        lines.append(f"  {'metric':<22}{'candidate':>10}{'baseline':>10}  threshold")
        for name, row in summary["metrics"].items():
            rule = row["threshold"] or ""
            if row["max_drop"] is not None:
                rule += f"{', ' if rule else ''}drop <= {row['max_drop']} vs baseline"
            values = f"{_format_value(row['candidate']):>10}{_format_value(row['baseline']):>10}"
            lines.append(f"  {name:<22}{values}  {rule}")
        if summary["blessed"]:
            basis = "thresholds and baseline" if summary["has_baseline"] else \
                "value thresholds (first model: no baseline yet)"
            lines.append(f"  blessed     yes, on {basis}")
        else:
            lines.append("  blessed     NO: " + "; ".join(summary["validation_failures"] or ["see Evaluator output"]))
    if "pushed" in summary:
        lines.append(f"  pushed      version {summary['pushed_version']} to {summary['pushed_path']}"
                     if summary["pushed"] else "  pushed      nothing (the model was not blessed)")
    return "\n".join(lines)

"""The end-of-run summary: the run's facts (review/facts.py, read from ML Metadata and the artifacts)
as the lines `tfxline run` prints."""
from typing import Optional

from review import evaluation, facts

collect = facts.collect


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
    if "drift_gate" in summary:
        lines.append("  drift       " + facts.drift_gate_line(summary["drift_gate"]))
    elif summary.get("drift", {}).get("checked"):
        drift = summary["drift"]
        lines.append("  drift       " + ("beyond threshold: " + ", ".join(drift["exceeded"]) if drift["exceeded"]
                                         else "within thresholds"))
    if "evaluation_note" in summary:
        lines.append("  evaluation  " + summary["evaluation_note"])
    if "metrics" in summary:
        lines.append(f"  {'metric':<22}{'candidate':>10}{'baseline':>10}  threshold")
        for name, row in summary["metrics"].items():
            values = f"{_format_value(row['candidate']):>10}{_format_value(row['baseline']):>10}"
            lines.append(f"  {name:<22}{values}  {row['threshold'] or ''}".rstrip())
        if summary["blessed"]:
            basis = "thresholds and baseline" if summary["has_baseline"] else \
                "value thresholds (first model: no baseline yet)"
            lines.append(f"  blessed     yes, on {basis}")
        else:
            reasons = evaluation.failure_reasons(summary["validation_failures"])
            lines.append("  blessed     NO: " + ("; ".join(reasons) if reasons else "see the Evaluator's output"))
    if "pushed" in summary:
        lines.append(f"  pushed      version {summary['pushed_version']} to {summary['pushed_path']}"
                     if summary["pushed"] else "  pushed      nothing (the model was not blessed)")
    edge = summary.get("edge")
    if edge and edge["exported"]:
        parity = edge.get("parity") or {}
        detail = (f" (max score difference {parity['max_score_diff']:.2g} on {parity['examples']} examples)"
                  if "max_score_diff" in parity else "")
        lines.append(f"  tflite      version {edge['version']} to {edge['path']}{detail}")
    return "\n".join(lines)

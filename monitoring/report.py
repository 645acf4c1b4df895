"""A monitoring report as text for people, JSON for programs, TFDV statistics protos for TFDV's tools."""
import json
import math
import os
from typing import List

from monitoring import quality, statistics
from monitoring.compare import Comparison, FeatureResult
from monitoring.monitor import LABELS, Report

# Exit codes of `tfxline monitor`: schedulers act on them (DRIFT: covariate or concept drift).
NO_DRIFT, ERROR, CONFIG_ERROR, DRIFT = 0, 1, 2, 3


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _effect(result: FeatureResult) -> str:
    effect = result.effect
    if effect.get("value") is None:
        return "-"
    if result.test == "ks":
        return f"mean {effect['value']:+.2f} SD [{effect['low']:+.2f}, {effect['high']:+.2f}]"
    return f"{effect['value_of']} {effect['value']:+.1f} pts [{effect['low']:+.1f}, {effect['high']:+.1f}]"


def _other(result: FeatureResult) -> str:
    if result.test == "ks":
        return f"out of range {_share(result.out_of_range_share)}"
    return f"new values {_share(result.new_share)}"


def _feature_line(result: FeatureResult) -> str:
    test = "KS" if result.test == "ks" else "max |z|"
    missing = f"{_share(result.missing_share[0])} -> {_share(result.missing_share[1])}"
    line = (f"    {result.feature:<24}{test:<8}{result.score:>8.4g}{result.threshold:>10.4g}{result.ratio:>7.1f}x"
            f"  {_p(result.p_value):<8} {_effect(result):<40} missing {missing:<16} {_other(result)}")
    return line + (f"  ({result.note})" if result.note else "")


def _comparison_lines(comparison: Comparison, all_features: bool) -> List[str]:
    drifted = comparison.drifted
    verdict = (f"DRIFT in {len(drifted)} of {len(comparison.features)} features" if drifted
               else f"no drift ({len(comparison.features)} features)")
    lines = [f"  {comparison.name:<26} {comparison.window_rows:>11,} vs {comparison.reference_rows:,} rows   {verdict}"
             f" (each at alpha {comparison.feature_alpha:.4g})"]
    shown = comparison.features if all_features else drifted
    if shown:
        lines.append(f"    {'feature':<24}{'test':<8}{'score':>8}{'threshold':>10}{'':>8}  {'p':<8} "
                     f"{'effect [95% CI]':<40} window vs reference")
        lines += [_feature_line(r) for r in sorted(shown, key=lambda r: -r.ratio)]
    quiet = [r.feature for r in comparison.features if not r.drift]
    if drifted and quiet and not all_features:
        lines.append("    no drift: " + ", ".join(quiet))
    if comparison.missing_features:
        lines.append("    not in these statistics: " + ", ".join(comparison.missing_features))
    return lines


def _estimate(estimate) -> str:
    return "-" if estimate is None else f"{estimate.value:.4f} [{estimate.low:.4f}, {estimate.high:.4f}]"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _quality_lines(version: quality.VersionQuality) -> List[str]:
    first = version.windows[0]
    names = list(first.metrics)
    requests = f" of {version.requests:,} requests" if version.requests is not None else ""
    lag = first.lag_seconds
    lines = [f"  live quality: {first.labels:,} labelled{requests}; label lag median {_duration(lag[0])}, "
             f"90% {_duration(lag[1])}; at training: {version.training_source}",
             (f"    {'window':<16}{'labels':>8}  " + "".join(f"{name + ' [95% CI]':<34}" for name in names)).rstrip()]
    for window in version.windows:
        lines.append((f"    {window.name:<16}{window.labels:>8,}  "
                      + "".join(f"{_estimate(window.metrics.get(name)):<34}" for name in names)).rstrip())
    lines.append((f"    {'at training':<16}{'':>8}  " + "".join(
        f"{(f'{version.training[name]:.4f}' if name in version.training else '-'):<34}" for name in names)).rstrip())
    if version.concept_drift is None:
        lines.append(f"  concept drift: {version.note}")
    else:
        live = version.windows[1] if len(version.windows) > 1 and version.windows[1].name == "newest" \
            else version.windows[0]
        worse = "rise" if version.metric in quality.LOWER_IS_BETTER else "drop"
        lines.append(f"  concept drift: {version.metric} {_estimate(live.metrics[version.metric])} in the {live.name} "
                     f"window vs {version.training[version.metric]:.4f} at training (max {worse} "
                     f"{version.max_drop:g}): " + ("CONCEPT DRIFT" if version.concept_drift else "none"))
    return lines


def format_text(report: Report, all_features: bool = False) -> str:
    lines = [f"tfxline monitor: model '{report.model}', {report.rows:,} requests from {report.source}",
             f"  windows: {report.window} of each version; false alarms at most {report.alpha:g} per comparison "
             f"(all features)"]
    live = {q.version: q for q in report.quality}
    for version in report.versions:
        lines.append("")
        lines.append(f"version {version.version}: {version.rows:,} requests; training data: {version.training}")
        for comparison in version.comparisons:
            lines += _comparison_lines(comparison, all_features)
        lines += [f"  note: {note}" for note in version.notes]
        if version.version in live:
            lines += _quality_lines(live[version.version])
    drifted = [(v.version, c.name) for v in report.versions for c in v.comparisons if c.drifted]
    lines.append("")
    lines.append(f"verdict: DRIFT in {len(drifted)} comparison(s): " + "; ".join(f"version {v} {n}" for v, n in drifted)
                 if drifted else "verdict: no drift")
    if report.quality:
        concept = [q for q in report.quality if q.concept_drift]
        moved = {v.version for v in report.versions if v.drifted}
        lines.append("concept: " + ("; ".join(
            f"CONCEPT DRIFT in version {q.version} ({q.metric}; inputs "
            f"{'moved too' if q.version in moved else 'did not move'})" for q in concept) if concept
            else "no concept drift"))
    return "\n".join(lines)


def _number(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else (value if math.isfinite(value) else ("inf" if value > 0 else "-inf"))


def feature_json(result: FeatureResult) -> dict:
    return {
        "feature": result.feature, "kind": result.kind, "test": result.test, "score": _number(result.score),
        "threshold": _number(result.threshold), "ratio": _number(result.ratio), "p_value": _number(result.p_value),
        "alpha": result.alpha, "drift": result.drift,
        "measure": {"name": result.measure["name"], "value": _number(result.measure["value"])},
        "effect": {key: _number(value) if key in ("value", "low", "high") else value
                   for key, value in result.effect.items()},
        "missing_share": {"reference": _number(result.missing_share[0]), "window": _number(result.missing_share[1])},
        "new_share": _number(result.new_share), "out_of_range_share": _number(result.out_of_range_share),
        "rows": {"reference": _number(result.rows[0]), "window": _number(result.rows[1])}, "note": result.note,
    }


def to_json(report: Report) -> dict:
    return {
        "model": report.model, "source": report.source, "rows": report.rows, "window": report.window,
        "alpha": report.alpha, "created": report.created, "drift": report.drifted,
        "versions": [{
            "version": v.version, "rows": v.rows, "training": v.training, "notes": v.notes, "drift": v.drifted,
            "comparisons": [{
                "name": c.name, "reference": c.reference, "window": c.window, "reference_rows": c.reference_rows,
                "window_rows": c.window_rows, "alpha": c.alpha, "feature_alpha": c.feature_alpha,
                "drift": bool(c.drifted), "missing_features": c.missing_features,
                "features": [feature_json(r) for r in c.features]} for c in v.comparisons],
        } for v in report.versions],
        "concept_drift": report.concept_drifted,
        "quality": [{
            "version": q.version, "requests": q.requests, "metric": q.metric, "max_drop": q.max_drop,
            "concept_drift": q.concept_drift, "note": q.note, "training": q.training,
            "training_source": q.training_source,
            "windows": [{"name": w.name, "labels": w.labels,
                         "label_lag_seconds": {"median": _number(w.lag_seconds[0]), "p90": _number(w.lag_seconds[1])},
                         "metrics": {name: None if e is None else {"value": e.value, "low": e.low, "high": e.high}
                                     for name, e in w.metrics.items()}} for w in q.windows],
        } for q in report.quality],
    }


def write_json(report: Report, path: str) -> None:
    _atomic_write(path, json.dumps(to_json(report), indent=2))


def statistics_files(report: Report, directory: str) -> List[str]:
    """Each profile as a DatasetFeatureStatisticsList file (tfdv.load_stats_binary reads it):
    <directory>/v<version>-<training|all|newest|previous>.pb."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for version in report.versions:
        for key, profile in version.profiles.items():
            path = os.path.join(directory, f"v{version.version}-{key}.pb")
            _atomic_write(path, statistics.as_list(profile.proto).SerializeToString())
            written.append(path)
    return written


def _atomic_write(path: str, data) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
    os.replace(temporary, path)


# --- Prometheus ---------------------------------------------------------------------------------------

GAUGES = [
    ("tfxline_drift_score", "Test statistic of a feature's skew or drift check: KS distance, or max |z| of a "
                            "value's share"),
    ("tfxline_drift_threshold", "Critical value of the score at the comparison's sample sizes"),
    ("tfxline_drift_verdict", "1 when the score is past the threshold (the feature drifted), else 0"),
]


# Exported when labels were joined (`tfxline feedback ingest`).
QUALITY_GAUGES = ("tfxline_live_metric", "tfxline_concept_drift")


def _labels(**labels) -> str:
    def escape(value):
        return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in labels.items()) + "}"


def _value(value: float) -> str:
    return "+Inf" if value == math.inf else ("NaN" if value != value else repr(float(value)))


def prometheus_text(report: Report, model: str, up: bool = True, last_run: float = 0.0) -> str:
    """The gauges of one report (or none, when the last run failed) in the text exposition format."""
    lines = []
    series = []
    for version in (report.versions if report else []):
        for comparison in version.comparisons:
            for result in comparison.features:
                labels = _labels(model=model, version=version.version, comparison=LABELS[comparison.name],
                                 feature=result.feature)
                series.append((labels, result))
    for (name, help_text), field in zip(GAUGES, ("score", "threshold", "drift")):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{labels} {_value(float(getattr(result, field)))}" for labels, result in series]
    lines += ["# HELP tfxline_monitor_up 1 when the last monitoring run succeeded, 0 when it failed",
              "# TYPE tfxline_monitor_up gauge", f"tfxline_monitor_up{_labels(model=model)} {int(up)}",
              "# HELP tfxline_monitor_last_run_timestamp_seconds When the last monitoring run ended",
              "# TYPE tfxline_monitor_last_run_timestamp_seconds gauge",
              f"tfxline_monitor_last_run_timestamp_seconds{_labels(model=model)} {last_run:.3f}"]
    if report and report.quality:
        lines += ["# HELP tfxline_live_metric A model version's live metric on the requests whose labels arrived, "
                  "per window (bound: value, low or high end of its 95% interval)",
                  "# TYPE tfxline_live_metric gauge"]
        lines += [f"{QUALITY_GAUGES[0]}{_labels(model=model, version=q.version, window=w.name, metric=name, bound=b)}"
                  f" {_value(getattr(e, b))}"
                  for q in report.quality for w in q.windows for name, e in w.metrics.items() if e is not None
                  for b in ("value", "low", "high")]
        lines += ["# HELP tfxline_concept_drift 1 when a version's live metric fell beyond monitoring.concept.max_drop "
                  "from its training-time value, 0 when not, absent when not judged",
                  "# TYPE tfxline_concept_drift gauge"]
        lines += [f"{QUALITY_GAUGES[1]}{_labels(model=model, version=q.version, metric=q.metric)} "
                  f"{int(q.concept_drift)}" for q in report.quality if q.concept_drift is not None]
    if report:
        lines += ["# HELP tfxline_monitor_requests Logged requests per model version in the last run",
                  "# TYPE tfxline_monitor_requests gauge"]
        lines += [f"tfxline_monitor_requests{_labels(model=model, version=v.version)} {v.rows}"
                  for v in report.versions]
    return "\n".join(lines) + "\n"


def write_textfile(text: str, path: str) -> None:
    """For node-exporter's textfile collector: written whole, then renamed into place."""
    _atomic_write(path, text)

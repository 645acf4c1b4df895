"""The review as HTML: one self-contained page (inline CSS and SVG, no scripts, no links to fetch), and
each section on its own for the notebooks. Everything is rendered from the report dict of
review/report.py; every chart has a table of the same numbers under it."""
import html
from typing import Callable, Dict, List, Optional

from review import facts, svg

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1f24;margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px;background:#fff}
h1{font-size:22px;margin:8px 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d4da;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}nav a{margin-right:12px}a{color:#1f5fbf}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d0d4da;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef0f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600}
.ok{background:#dcefdc;color:#145214}.bad{background:#fbe0de;color:#8c1d18}.warn{background:#fdf0d5;color:#6b4700}
.muted{color:#5b6270}.note{background:#fdf0d5;border-left:4px solid #d89a00;padding:6px 10px;margin:8px 0}
.charts{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.chart{min-width:300px}
details{margin:2px 0 10px}summary{cursor:pointer;color:#1f5fbf}
code{font-size:12px;background:#eef0f3;padding:0 3px}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    """A metric or rate with `digits` decimals."""
    if value is None:
        return '<span class="muted">-</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _count(value) -> str:
    """An example count or another whole number."""
    if value is None:
        return '<span class="muted">-</span>'
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _stat(value) -> str:
    """A statistic of a feature: whole numbers as such, others to 3 decimals."""
    if value is None:
        return '<span class="muted">-</span>'
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"


def _delta(value) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    return f"{value:+.4f}"


def _table(headers: List[str], rows: List[List[str]], numeric: Optional[List[bool]] = None) -> str:
    numeric = numeric or [False] * len(headers)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{cell}</td>' if numeric[i] else f"<td>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _twin(table: str, label: str = "Table of the same numbers") -> str:
    return f"<details><summary>{_e(label)}</summary>{table}</details>"


def _badge(ok: Optional[bool], yes: str, no: str) -> str:
    if ok is None:
        return '<span class="badge warn">not evaluated</span>'
    return f'<span class="badge {"ok" if ok else "bad"}">{_e(yes if ok else no)}</span>'


# ---- sections -----------------------------------------------------------------------------------

def notes_html(report: dict) -> str:
    notes = list(report.get("notes", [])) + [report["model_card"]["note"]] * bool(report["model_card"].get("note"))
    return "".join(f'<p class="note">{_e(note)}</p>' for note in notes)


def summary_html(report: dict) -> str:
    s = report["summary"]
    parts = ['<section id="summary"><h2>Summary</h2>']
    blessed = s.get("blessed")
    parts.append(f"<p>Run <code>{_e(s['run_id'])}</code> of <b>{_e(s['pipeline'])}</b> ({_e(s['task'])}): "
                 f"{_badge(blessed, 'blessed', 'not blessed')} "
                 f"{_badge(s.get('pushed'), 'pushed', 'not pushed') if 'pushed' in s else ''}</p>")
    facts_rows = [["span", _e(s.get("span", "-"))],
                  ["rows", ", ".join(f"{_e(k)} {v:,}" for k, v in (s.get("rows") or {}).items()) or "-"]]
    anomalies = s.get("anomalies")
    facts_rows.append(["anomalies", "not checked (the gate did not run)" if anomalies is None else
                       ("none" if not anomalies else f"{len(anomalies)} (see Data)")])
    drift = s.get("drift") or {}
    if "drift_gate" in s:
        facts_rows.append(["drift gate", _e(facts.drift_gate_line(s["drift_gate"]))])
    facts_rows.append(["TFDV drift and skew", "not checked" if not drift.get("checked") else
                       (f"beyond threshold: {_e(', '.join(drift['exceeded']))}" if drift["exceeded"]
                        else "within thresholds")])
    facts_rows.append(["components", ", ".join(f"{_e(c['id'])} {_e(c['state'].lower())}" for c in s["components"])])
    parts.append(_table(["", ""], facts_rows))
    if s.get("evaluation_note"):
        parts.append(f'<p class="note">{_e(s["evaluation_note"])}</p>')
    metrics = s.get("metrics")
    if metrics:
        parts.append("<h3>Metrics on all eval rows</h3>")
        rows = [[_e(name), _num(row["candidate"]), _num(row["baseline"]), _delta(row["delta"]),
                 _e(row["threshold"] or ""), _badge(row["passed"], "met", "missed") if row["threshold"] else ""]
                for name, row in metrics.items()]
        parts.append(_table(["metric", "candidate", "baseline", "delta", "threshold", ""], rows,
                            [False, True, True, True, False, False]))
        if blessed:
            basis = "every threshold and the baseline comparison" if s.get("has_baseline") else \
                "the value thresholds (first model: no baseline yet)"
            parts.append(f"<p>Blessed: the candidate met {basis}.</p>")
        else:
            failures = s.get("validation_failures") or []
            parts.append(f"<p><b>Not blessed</b>: {len(failures)} validation failure(s).</p>")
            rows = [[_e(f["metric"]), _e(f["slice"]), _e(f["kind"]), _num(f["value"]), _e(_threshold_text(f)),
                     _num(f["candidate"]), _num(f["baseline"]), _e(f["text"])] for f in failures]
            parts.append(_table(["metric", "where", "kind", "value", "threshold", "candidate", "baseline", "why"],
                                rows, [False, False, False, True, False, True, True, False]))
    push_rows = []
    if "pushed" in s:
        push_rows.append(["TF Serving", f"version {_e(s['pushed_version'])} at <code>{_e(s['pushed_path'])}</code>"
                          if s["pushed"] else "nothing pushed (the model was not blessed)"])
    edge = s.get("edge")
    if edge:
        if edge["exported"]:
            parity = edge.get("parity") or {}
            detail = ", ".join(f"{_e(k)} {_num(v, 6) if isinstance(v, float) else _e(v)}" for k, v in parity.items())
            sizes = ", ".join(f"{_e(k)} {v:,} bytes" for k, v in (edge.get("files") or {}).items())
            push_rows.append(["TFLite", f"version {_e(edge['version'])} at <code>{_e(edge['path'])}</code>; "
                              f"parity: {detail}; {sizes}"])
        else:
            push_rows.append(["TFLite", "not exported"])
    if push_rows:
        parts.append("<h3>Pushed</h3>" + _table(["target", "what"], push_rows))
    parts.append("</section>")
    return "".join(parts)


def _threshold_text(failure: dict) -> str:
    threshold = failure.get("threshold") or {}
    if threshold.get("kind") == "change":
        return f"drop <= {threshold['max_drop']:g} vs baseline"
    bounds = []
    if "lower" in threshold:
        bounds.append(f">= {threshold['lower']:g}")
    if "upper" in threshold:
        bounds.append(f"<= {threshold['upper']:g}")
    return ", ".join(bounds)


def slices_html(report: dict) -> str:
    slices = report.get("slices")
    parts = ['<section id="slices"><h2>Slices</h2>']
    if not slices:
        parts.append('<p class="muted">No evaluation in this run.</p></section>')
        return "".join(parts)
    names = slices["metrics"]
    parts.append(f"<p>Every slice of the eval split: candidate beside baseline, with TFMA's delta. Slices under "
                 f"{slices['min_slice_size']} examples are marked <i>insufficient data</i> and not ranked; "
                 f"rank 1 is the weakest slice of its feature by {_e(slices['primary'])}. "
                 "A slice is <i>regressed</i> when a metric "
                 f"dropped by more than its allowed change.</p>")
    headers = ["slice", "count", "rank", "flags"]
    numeric = [False, True, True, False]
    for name in names:
        headers += [f"{name}", "baseline", "delta"] if slices["has_baseline"] else [name]
        numeric += [True, True, True] if slices["has_baseline"] else [True]
    rows = []
    for row in slices["rows"]:
        flags = []
        if row["regressed"]:
            flags.append(f'<span class="badge bad">regressed: {_e(", ".join(row["regressed"]))}</span>')
        if not row["sufficient"]:
            flags.append('<span class="badge warn">insufficient data</span>')
        cells = [_e(row["slice"]), _count(row["count"]), _e(row["rank"] or ""), " ".join(flags)]
        for name in names:
            value = row["metrics"][name]
            cells.append(_num(value["candidate"]))
            if slices["has_baseline"]:
                cells += [_num(value["baseline"]), _delta(value["delta"])]
        rows.append(cells)
    parts.append(_table(headers, rows, numeric))
    if slices["hidden"]:
        hidden = ", ".join(f"{_e(feature)}: {count}" for feature, count in slices["hidden"].items())
        parts.append(f'<p class="muted">Not shown (fewer than {slices["min_count"]} examples each, for privacy): '
                     f"{hidden} slice(s).</p>")
    parts.append("</section>")
    return "".join(parts)


def _curve_charts(plots: dict) -> List[str]:
    charts = []
    curves = plots.get("curves") or {}
    if not curves:
        return charts
    series_roc, series_pr = [], []
    for model, points in curves.items():
        style = {"color": svg.CANDIDATE if model == "candidate" else svg.BASELINE, "dashed": model != "candidate",
                 "label": model}
        series_roc.append({**style, "points": [(p["false_positive_rate"], p["recall"]) for p in points]})
        series_pr.append({**style, "points": [(p["recall"], p["precision"]) for p in points
                                              if p["tp"] + p["fp"] > 0]})
    charts.append(svg.line_chart("ROC curve", series_roc, "false positive rate", "true positive rate", diagonal=True))
    charts.append(svg.line_chart("Precision-recall curve", series_pr, "recall", "precision"))
    candidate = curves.get("candidate") or next(iter(curves.values()))
    step = max(1, len(candidate) // 10)
    points = candidate[::step]
    roc = _table(["threshold", "FPR", "TPR", "TP", "FP", "TN", "FN"],
                 [[_num(p["threshold"], 2), _num(p["false_positive_rate"]), _num(p["recall"]), _count(p["tp"]),
                   _count(p["fp"]), _count(p["tn"]), _count(p["fn"])] for p in points], [True] * 7)
    pr = _table(["threshold", "recall", "precision"],
                [[_num(p["threshold"], 2), _num(p["recall"]), _num(p["precision"])] for p in points], [True] * 3)
    return [f'<div class="chart">{charts[0]}{_twin(roc)}</div>', f'<div class="chart">{charts[1]}{_twin(pr)}</div>']


def _calibration_chart(plots: dict) -> List[str]:
    calibration = (plots.get("calibration") or {}).get("candidate")
    if not calibration:
        return []
    chart = svg.line_chart("Calibration: mean label by mean prediction",
                           [{"label": "candidate", "color": svg.CANDIDATE,
                             "points": [(b["mean_prediction"], b["mean_label"]) for b in calibration]}],
                           "mean prediction", "mean label", diagonal=True, markers=True)
    rows = [[f"[{_num(b['low'], 2)}, {_num(b['high'], 2)})", _count(b["count"]), _num(b["mean_prediction"]),
             _num(b["mean_label"])] for b in calibration]
    table = _table(["score bucket", "examples", "mean prediction", "mean label"], rows, [False] + [True] * 3)
    return [f'<div class="chart">{chart}{_twin(table)}</div>']


def _confusion_chart(plots: dict) -> List[str]:
    matrix = (plots.get("confusion_matrix") or {}).get("candidate")
    if not matrix:
        return []
    threshold = plots.get("decision_threshold")
    values = [[matrix["tn"], matrix["fp"]], [matrix["fn"], matrix["tp"]]]
    chart = svg.matrix_chart(f"Confusion matrix at the decision threshold {threshold}", ["label 0", "label 1"],
                             ["predicted 0", "predicted 1"], values, "actual", f"predicted (score > {threshold})")
    rows = [["label 0", _count(matrix["tn"]), _count(matrix["fp"])],
            ["label 1", _count(matrix["fn"]), _count(matrix["tp"])]]
    return [f'<div class="chart">{chart}{_twin(_table(["", "predicted 0", "predicted 1"], rows, [False, True, True]))}'
            "</div>"]


def _multiclass_chart(plots: dict) -> List[str]:
    entries = (plots.get("confusion_matrix") or {}).get("candidate")
    if not entries:
        return []
    classes = sorted({e["actual"] for e in entries} | {e["predicted"] for e in entries})
    lookup = {(e["actual"], e["predicted"]): e["count"] for e in entries}
    values = [[lookup.get((a, p), 0.0) for p in classes] for a in classes]
    labels = [f"class {c}" for c in classes]
    chart = svg.matrix_chart("Confusion matrix (highest score)", labels, labels, values, "actual", "predicted")
    rows = [[_e(labels[i])] + [_count(v) for v in row] for i, row in enumerate(values)]
    return [f'<div class="chart">{chart}{_twin(_table([""] + labels, rows, [False] + [True] * len(labels)))}</div>']


def _residual_chart(plots: dict) -> List[str]:
    residuals = plots.get("residuals") or []
    if not residuals:
        return []
    chart = svg.bar_chart("Mean residual (prediction - label) by slice",
                          [(r["slice"], r["residual"]) for r in residuals], "mean prediction - mean label")
    rows = [[_e(r["slice"]), _count(r["count"]), _num(r["mean_prediction"]), _num(r["mean_label"]), _num(r["residual"])]
            for r in residuals]
    table = _table(["slice", "examples", "mean prediction", "mean label", "residual"], rows, [False] + [True] * 4)
    return [f'<div class="chart">{chart}{_twin(table)}</div>']


def plots_html(report: dict) -> str:
    plots = report.get("plots")
    parts = ['<section id="plots"><h2>Plots</h2>']
    if not plots:
        parts.append('<p class="muted">No evaluation in this run.</p></section>')
        return "".join(parts)
    if plots["task"] == "binary":
        charts = _curve_charts(plots) + _calibration_chart(plots) + _confusion_chart(plots)
    elif plots["task"] == "multiclass":
        charts = _multiclass_chart(plots)
    else:
        charts = _residual_chart(plots)
    parts.append("<p>All eval rows; the candidate in blue, the baseline dashed grey.</p>")
    parts.append(f'<div class="charts">{"".join(charts)}</div></section>')
    return "".join(parts)


def fairness_html(report: dict) -> str:
    fairness = report.get("fairness")
    parts = ['<section id="fairness"><h2>Fairness</h2>']
    if not fairness:
        parts.append('<p class="muted">No fairness evaluation in this run (evaluation.fairness.features is '
                     "empty, or there is no evaluation).</p></section>")
        return "".join(parts)
    parts.append(f"<p>Each group at the decision threshold {fairness['decision_threshold']} (a score above it is a "
                 f"positive prediction), with 95% Wilson intervals. The differences are the largest gaps between two "
                 f"groups of at least {fairness['min_group_size']} examples (fairlearn's definitions; "
                 f"equalized odds is the larger of the TPR and FPR gaps), as the Evaluator gated them.</p>")
    for feature in fairness["features"]:
        title = f"{feature['feature']}{' (sensitive)' if feature['sensitive'] else ''}"
        parts.append(f"<h3>{_e(title)}</h3>")
        gap_rows = []
        for gap, value in feature["gaps"].items():
            status = "" if value["bound"] is None else _badge(value["passed"], "within bound", "beyond bound")
            between = " vs ".join(value["groups"]) if value["groups"] else "-"
            gap_rows.append([_e(gap), _num(value["value"]), _e(between),
                             _num(value["bound"]) if value["bound"] is not None else "not gated", status])
        parts.append(_table(["difference", "value", "between", "bound", ""], gap_rows,
                            [False, True, False, True, False]))
        rows, chart_rows = [], []
        for group in feature["groups"]:
            cells = [_e(group["group"]), _count(group["count"]),
                     "" if group["sufficient"] else '<span class="badge warn">insufficient data</span>']
            for rate in ("selection_rate", "true_positive_rate", "false_positive_rate", "false_negative_rate"):
                item = group[rate]
                interval = item["interval"]
                shown = f' <span class="muted">[{interval[0]:.3f}, {interval[1]:.3f}]</span>' if interval else ""
                cells.append(_num(item["value"], 3) + shown)
            rows.append(cells)
            chart_rows.append((group["group"], group["selection_rate"]["value"], group["selection_rate"]["interval"],
                               group["sufficient"]))
        if chart_rows:
            parts.append(svg.interval_chart(f"Selection rate by {feature['feature']}", chart_rows,
                                            "selection rate (95% interval)"))
        parts.append(_table(["group", "count", "", "selection rate", "TPR", "FPR", "FNR"], rows,
                            [False, True, False, True, True, True, True]))
        if feature["hidden_groups"]:
            parts.append(f'<p class="muted">{feature["hidden_groups"]} group(s) with fewer than '
                         f'{fairness["min_count"]} examples are not shown (privacy).</p>')
    parts.append("</section>")
    return "".join(parts)


def _numeric_cell(numeric: dict, feature: str) -> str:
    text = f"mean {_stat(numeric['mean'])}, sd {_stat(numeric['std_dev'])}, zeros {_count(numeric['zeros'])}"
    deciles = numeric.get("deciles")
    if deciles:
        text += (f"<br>deciles {_stat(deciles[0])} … {_stat(deciles[len(deciles) // 2])} (median) … "
                 f"{_stat(deciles[-1])} " + svg.decile_strip(f"deciles of {feature}", deciles))
    return text


def _categorical_cell(categorical: dict) -> str:
    top = ", ".join(f"{_e(t['value'])} ({t['count']:,.0f})" for t in categorical["top_values"])
    hidden = categorical["values_not_shown"]
    return (f"{categorical['unique']:,} values; top: {top or '-'}"
            + (f' <span class="muted">({hidden} with fewer examples not shown)</span>' if hidden else ""))


def statistics_html(report: dict) -> str:
    statistics = (report.get("data") or {}).get("statistics") or {}
    parts = []
    for split, table in statistics.items():
        parts.append(f"<h3>Statistics: {_e(split)} ({table['num_examples']:,} rows)</h3>")
        rows = []
        for row in table["features"]:
            detail = _numeric_cell(row["numeric"], row["feature"]) if "numeric" in row else \
                _categorical_cell(row["categorical"]) if "categorical" in row else ""
            name = _e(row["feature"]) + (' <span class="badge warn">sensitive</span>' if row["sensitive"] else "")
            rows.append([name, _e(row["type"]), _count(row["present"]), _count(row["missing"]), detail])
        parts.append(_table(["feature", "type", "present", "missing", "distribution"], rows,
                            [False, False, True, True, False]))
    if not statistics:
        parts.append('<p class="muted">No statistics in this run.</p>')
    return "".join(parts)


def schema_html(report: dict) -> str:
    schema = (report.get("data") or {}).get("schema")
    if not schema:
        return '<h3>Schema</h3><p class="muted">No schema in this run.</p>'
    rows = []
    for feature in schema["features"]:
        domain = feature["domain"]
        if domain is None:
            domain_text = "-"
        elif domain["kind"] == "string":
            domain_text = ", ".join(_e(v) for v in domain["values"]) + (
                f' <span class="muted">(+{domain["values_not_shown"]} rare)</span>'
                if domain["values_not_shown"] else "")
        else:
            domain_text = _e(", ".join(f"{k} {v}" for k, v in domain.items() if v is not None))
        presence = " ".join(x for x in (f"min fraction {feature['min_fraction']:g}" if feature["min_fraction"]
                                        is not None else "",
                                        f"min count {feature['min_count']}" if feature["min_count"] else "") if x)
        comparators = "; ".join(f"{kind}: " + ", ".join(f"{k} {v:g}" for k, v in feature[kind].items())
                                for kind in ("drift", "skew") if feature[kind])
        envs = ", ".join([f"not in {e}" for e in feature["not_in_environment"]] +
                         [f"in {e}" for e in feature["in_environment"]])
        name = _e(feature["feature"]) + (' <span class="badge warn">sensitive</span>' if feature["sensitive"] else "")
        rows.append([name, _e(feature["type"]), _e(presence or "-"), _e(feature["valency"] or "-"), domain_text,
                     _e(envs or "-"), _e(comparators or "-")])
    return "<h3>Schema</h3>" + _table(["feature", "type", "presence", "values", "domain", "environments",
                                       "drift / skew comparators"], rows)


def anomalies_html(report: dict) -> str:
    summary = report["summary"]
    anomalies = summary.get("anomalies")
    parts = ["<h3>Anomalies</h3>"]
    if anomalies is None:
        parts.append('<p class="muted">Not checked: the AnomalyGate did not run.</p>')
    elif not anomalies:
        parts.append("<p>None: every split matched the schema.</p>")
    else:
        parts.append(_table(["split", "feature", "kind", "description", "allowed"],
                            [[_e(a["split"]), _e(a["feature"]), _e(a["kind"]), _e(a["description"]),
                              "yes" if a["allowed"] else "no"] for a in anomalies]))
    drift = summary.get("drift") or {}
    parts.append("<h3>Drift and skew</h3>")
    if not drift.get("checked"):
        parts.append("<p>Not checked: no validation in this run measured drift or skew.</p>")
    else:
        parts.append(_table(["feature", "check", "measure", "value", "threshold", ""],
                            [[_e(m["feature"]), _e(m["check"]), _e(m["measure"]), _num(m["value"]),
                              _num(m["threshold"]), _badge(not m["exceeded"], "within", "beyond")]
                             for m in drift["measurements"]], [False, False, False, True, True, False]))
    return "".join(parts)


def data_html(report: dict) -> str:
    return ('<section id="data"><h2>Data</h2>' + statistics_html(report) + schema_html(report)
            + anomalies_html(report) + "</section>")


STEP_LABELS = {"span": "examples (span)", "statistics": "statistics", "schema": "schema", "anomalies": "anomalies",
               "gate": "anomaly gate", "transform": "transform graph", "model": "model", "evaluation": "evaluation",
               "blessing": "blessing", "push": "push (TF Serving)", "tflite": "TFLite"}


def _node_status(node: dict) -> str:
    properties = node["properties"]
    for key in ("blessed", "pushed", "exported", "passed"):
        if key in properties and isinstance(properties[key], (int, float)):
            return "good" if properties[key] else "bad"
    return ""


def lineage_html(report: dict) -> str:
    drawn = report.get("lineage") or {}
    nodes = drawn.get("nodes") or []
    parts = ['<section id="lineage"><h2>Lineage</h2>']
    if not nodes:
        parts.append('<p class="muted">Nothing recorded.</p></section>')
        return "".join(parts)
    shown = []
    for node in nodes:
        label = STEP_LABELS.get(node["step"], node["step"])
        if node["role"] == "baseline":
            label = "baseline model"
        details = [f"#{node['artifact_id']} {node['producer'] or 'earlier run'}"]
        properties = node["properties"]
        for key, text in (("span", "span"), ("blessed", "blessed"), ("pushed_version", "version"),
                          ("edge_version", "version"), ("anomalies", "anomalies")):
            if key in properties:
                value = properties[key]
                details.append(f"{text} {('yes' if value else 'no') if key == 'blessed' else value}")
        shown.append({"artifact_id": node["artifact_id"], "label": label, "details": details, "role": node["role"],
                      "status": _node_status(node)})
    written = {}
    for node in nodes:
        if node["producer"]:
            written.setdefault(node["producer"], []).append(node["artifact_id"])
    ordering = [(source, target) for gate, gated in drawn.get("ordering", [])
                for source in written.get(gate, []) for target in written.get(gated, [])]
    parts.append("<p>Artifacts the run read and wrote, as ML Metadata recorded them; an arrow is a component "
                 "that read one and wrote the other (dashed: the gate only orders Transform).</p>")
    parts.append(svg.lineage_graph("Lineage of the run", shown, drawn.get("edges", []), ordering))
    rows = [[_e(STEP_LABELS.get(n["step"], n["step"]) if n["role"] != "baseline" else "baseline model"),
             _e(n["artifact_id"]), _e(n["artifact_type"]), _e(n["producer"] or "earlier run"),
             _e(drawn.get("components", {}).get(n["producer"], "") if n["producer"] else ""),
             _e(", ".join(f"{k} {v}" for k, v in n["properties"].items() if k != "split_names")),
             f"<code>{_e(n['uri'])}</code>"] for n in nodes]
    parts.append(_twin(_table(["step", "artifact", "type", "written by", "state", "properties", "uri"], rows),
                       "Table of the lineage"))
    parts.append("</section>")
    return "".join(parts)


def _card_value(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{_e(k)}: {_card_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return "<br>".join(", ".join(f"{_e(k)} {_card_value(v)}" for k, v in item.items()) for item in value)
        return ", ".join(_card_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def model_card_html(report: dict) -> str:
    card = report.get("model_card") or {}
    parts = ['<section id="model-card"><h2>Model card</h2>']
    placeholders = card.get("placeholders") or []
    parts.append(f"<p>Sections after Mitchell et al. (2019). {card.get('auto_filled', 0)} fields come from ML "
                 f"Metadata, TFMA and TFDV; the human parts come from <code>{_e(card.get('human_parts_file'))}</code>."
                 "</p>")
    if placeholders:
        parts.append(f'<p class="note">{len(placeholders)} human part(s) are still placeholders: '
                     f"{_e(', '.join(placeholders))}.</p>")
    for section in card.get("sections", []):
        parts.append(f"<h3>{_e(section['title'])}</h3>")
        rows = [[_e(f["name"].replace("_", " ")), _card_value(f["value"]),
                 '<span class="badge warn">placeholder</span>' if f["source"] == "placeholder" else _e(f["source"])]
                for f in section["fields"]]
        parts.append(_table(["field", "value", "source"], rows))
    parts.append("</section>")
    return "".join(parts)


SECTIONS: Dict[str, Callable[[dict], str]] = {
    "summary": summary_html,
    "slices": slices_html,
    "plots": plots_html,
    "fairness": fairness_html,
    "data": data_html,
    "lineage": lineage_html,
    "model_card": model_card_html,
}
# Parts of the data section, for the data notebook.
PARTS: Dict[str, Callable[[dict], str]] = {
    "notes": notes_html,
    "statistics": statistics_html,
    "schema": schema_html,
    "anomalies": anomalies_html,
}
TITLES = {"summary": "Summary", "slices": "Slices", "plots": "Plots", "fairness": "Fairness", "data": "Data",
          "lineage": "Lineage", "model_card": "Model card"}


def fragment(report: dict, names: List[str]) -> str:
    """Some sections (or parts of the data section) with the page's style, for a notebook cell."""
    renderers = {**SECTIONS, **PARTS}
    return f'<div class="tfxline-review"><style>{_scoped_css()}</style>' + "".join(
        renderers[name](report) for name in names) + "</div>"


def _scoped_css() -> str:
    rules = []
    for rule in CSS.strip().replace("}", "}\n").splitlines():
        selector, _, body = rule.partition("{")
        if not body or selector.strip() in ("body", "main"):
            continue
        scoped = ",".join(f".tfxline-review {part.strip()}" for part in selector.split(","))
        rules.append(f"{scoped}{{{body}")
    return "".join(rules)


def page(report: dict) -> str:
    title = f"Review of {report['pipeline']}, run {report['run_id']}"
    nav = " ".join(f'<a href="#{name.replace("_", "-")}">{_e(label)}</a>' for name, label in TITLES.items())
    body = "".join(SECTIONS[name](report) for name in SECTIONS)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{_e(title)}</h1><p class=\"muted\">Generated {_e(report['generated'])} by tfxline review from the "
            f"run's artifacts. Aggregates of at least {report['privacy']['min_count']} examples only.</p>"
            f"<nav>{nav}</nav>{notes_html(report)}{body}</main></body></html>\n")

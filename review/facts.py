"""A run's facts, read back from ML Metadata and the artifacts it points to: what ran, rows per split,
anomalies, drift verdicts, metrics against thresholds and the baseline, the blessing and why, and
what was pushed (TF Serving and TFLite with its parity numbers). The end-of-run summary of
`tfxline run` prints them; the review report starts from them."""
import dataclasses
import json
import os
from typing import Dict, Optional

from config import PipelineConfig, metrics as metric_names
from metadata import runs, store
from review import data, evaluation as tfma_results

GATE_REPORT = "anomaly_report.json"
EDGE_MANIFEST = "manifest.json"


class ReviewProblem(RuntimeError):
    """Nothing (or not enough) to review, in one sentence that says what to do."""


@dataclasses.dataclass
class Run:
    config: PipelineConfig
    store: object
    run_id: str
    components: Dict[str, runs.ComponentRun]
    # What was read once from the artifacts (the statistics are read by several parts).
    loaded: dict = dataclasses.field(default_factory=dict)

    def output(self, component: str, key: str):
        return self.components[component].output(key) if component in self.components else None


def open_run(config: PipelineConfig, run_id: Optional[str] = None) -> Run:
    hint = "run `tfxline run` with this config first"
    if not store.has_store(config):
        raise ReviewProblem(f"pipeline '{config.name}' has no runs yet (no ML Metadata at "
                            f"{store.sqlite_path(config)}); {hint}")
    metadata_store = store.open_store(config)
    try:
        components = runs.run(metadata_store, config.name, run_id)
    except runs.UnknownRun as error:
        raise ReviewProblem(f"{error}; pass one of those with --run, or leave --run out for the latest") from None
    if not components:
        raise ReviewProblem(f"pipeline '{config.name}' has no runs yet in ML Metadata; {hint}")
    resolved = runs.run_id_of(metadata_store, next(iter(components.values())))
    return Run(config, metadata_store, resolved, components)


def _custom(artifact, name: str):
    if artifact is None or name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def splits(artifact) -> list:
    return json.loads(artifact.properties["split_names"].string_value)


def evaluation_state(run: Run) -> str:
    """"ok" (metrics exist), "failed" (the Evaluator failed) or "not run" (the run stopped earlier)."""
    component = run.components.get("Evaluator")
    if component is None:
        return "not run"
    evaluation = component.output("evaluation")
    if not component.succeeded or evaluation is None or not os.path.isdir(evaluation.uri):
        return "failed"
    return "ok"


def evaluation_note(run: Run) -> Optional[str]:
    """One sentence when there is no evaluation to review, else None."""
    state = evaluation_state(run)
    if state == "ok":
        return None
    if state == "failed":
        return (f"The Evaluator failed in run {run.run_id}, so there are no metrics, slices, plots or fairness "
                "results to review (`tfxline run` printed its error; --verbose shows the full logs).")
    stopped = [name for name, component in run.components.items() if not component.succeeded]
    where = f" at {stopped[0]}" if stopped else ""
    return (f"Run {run.run_id} stopped{where} before the Evaluator, so there are no metrics, slices, plots or "
            f"fairness results to review.")


def load_evaluation(run: Run) -> Optional[tfma_results.Evaluation]:
    if evaluation_state(run) != "ok":
        return None
    return tfma_results.load(run.output("Evaluator", "evaluation").uri)


def anomalies(run: Run) -> Optional[list]:
    """The AnomalyGate's findings (None when it did not run); rare values in descriptions redacted."""
    report = run.output("AnomalyGate", "report")
    if report is None or not os.path.isfile(os.path.join(report.uri, GATE_REPORT)):
        return None
    with open(os.path.join(report.uri, GATE_REPORT)) as handle:
        findings = json.load(handle)["findings"]
    values = value_filter(run)
    return [{**finding, "description": values.redact(finding["description"])} for finding in findings]


def statistics(run: Run) -> Dict[str, object]:
    if "statistics" not in run.loaded:
        artifact = run.output("StatisticsGen", "statistics")
        run.loaded["statistics"] = {} if artifact is None else {
            split: data.split_statistics(artifact.uri, split) for split in splits(artifact)}
    return run.loaded["statistics"]


def value_filter(run: Run) -> data.ValueFilter:
    return data.ValueFilter({split: data.value_counts(stats) for split, stats in statistics(run).items()},
                            run.config.review.min_count)


def anomaly_artifacts(run: Run) -> list:
    """Every ExampleAnomalies artifact the run wrote, per split (ExampleValidator's and any other
    validation that records drift or skew, e.g. TFX's DistributionValidator)."""
    found = []
    for component in run.components.values():
        for artifacts in component.outputs.values():
            for artifact in artifacts:
                if artifact.type == "ExampleAnomalies" and "split_names" in artifact.properties:
                    for split in splits(artifact):
                        path = os.path.join(artifact.uri, f"Split-{split}", data.ANOMALIES_FILE)
                        if os.path.isfile(path):
                            found.append(data.split_anomalies(artifact.uri, split))
    return found


def edge(run: Run) -> Optional[dict]:
    artifact = run.output("TFLiteExport", "edge_model")
    if artifact is None:
        return None
    result = {"exported": bool(_custom(artifact, "exported")), "version": _custom(artifact, "edge_version"),
              "path": _custom(artifact, "edge_path")}
    manifest_path = os.path.join(artifact.uri, EDGE_MANIFEST)
    if result["exported"] and os.path.isfile(manifest_path):
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        result["parity"] = manifest.get("metrics")
        result["files"] = {name: item.get("bytes") for name, item in manifest.get("files", {}).items()}
    return result


def drift_gate_line(drift: dict) -> str:
    """The drift gate's verdict (components/drift_gate) in one line."""
    if drift["baseline"] is None:
        return f"no baseline yet for span {drift['span']} (the first pushed model's data becomes it)"
    against = f"span {drift['span']} vs span {drift['baseline']['span']} (the served model's data)"
    findings = drift["findings"]
    if not findings:
        return f"none: {against}, {len(drift['features'])} features"
    details = "; ".join(f"{f['feature']} {f['test']} {f['score']:.3g} > {f['threshold']:.3g} ({f['action']})"
                        for f in findings)
    return f"{len(findings)} feature(s) drifted, {against}: {details}"


def collect(config: PipelineConfig, run_id: Optional[str] = None, run: Optional[Run] = None,
            evaluation: Optional[tfma_results.Evaluation] = None) -> dict:
    """The facts of a run (the latest without `run_id`); raises ReviewProblem without one."""
    run = run or open_run(config, run_id)
    summary = {
        "pipeline": config.name,
        "task": config.task,
        "run_id": run.run_id,
        "components": [{"id": c.node_id, "state": c.state, "cached": c.cached, "seconds": c.seconds}
                       for c in run.components.values()],
    }
    examples = run.output("CsvExampleGen", "examples")
    if examples is not None:
        summary["span"] = _custom(examples, "span")
    stats = statistics(run)
    if stats:
        summary["rows"] = {split: stats[split].datasets[0].num_examples for split in sorted(stats)}
    findings = anomalies(run)
    if findings is not None:
        summary["anomalies"] = findings
    summary["drift"] = data.drift_verdicts(anomaly_artifacts(run))
    drift_report = run.output("DriftGate", "report")
    if drift_report is not None:
        with open(os.path.join(drift_report.uri, "drift_report.json")) as handle:
            summary["drift_gate"] = json.load(handle)
    summary["evaluation"] = evaluation_state(run)
    note = evaluation_note(run)
    if note:
        summary["evaluation_note"] = note
    if evaluation is None:
        evaluation = load_evaluation(run)
    if evaluation is not None:
        summary["has_baseline"] = evaluation.baseline is not None
        baseline = run.components["Evaluator"].input("baseline_model")
        summary["baseline_model"] = {"id": baseline.id, "uri": baseline.uri} if baseline is not None else None
        summary["metrics"] = tfma_results.overall_metrics(evaluation, metric_names.evaluated_metrics(config))
        summary["validation_failures"] = tfma_results.validation_failures(evaluation)
        blessing = run.output("Evaluator", "blessing")
        summary["blessed"] = bool(_custom(blessing, "blessed"))
    pushed = run.output("Pusher", "pushed_model")
    if pushed is not None:
        summary["pushed"] = bool(_custom(pushed, "pushed"))
        if summary["pushed"]:
            summary["pushed_path"] = _custom(pushed, "pushed_destination")
            summary["pushed_version"] = _custom(pushed, "pushed_version")
    edge_model = edge(run)
    if edge_model is not None:
        summary["edge"] = edge_model
    return summary

"""The review of one pipeline run, from its artifacts only (no Beam, no model loaded): the run's facts,
every slice against the baseline, plots, fairness, the data, lineage and the model card, as one
JSON-ready dict. `write` puts it next to the run's other outputs as review.html (self-contained),
review.json, model_card.md and model_card.json; the notebooks render the same dict."""
import datetime
import json
import math
import os
import re
from typing import List, Optional

from config import PipelineConfig, metrics as metric_names
from metadata import lineage
from review import data, evaluation as tfma_results, facts, fairness as fairness_view, html, model_card

FORMAT = "tfxline-review/1"
FILES = {"html": "review.html", "json": "review.json", "card_markdown": "model_card.md",
         "card_json": "model_card.json"}
TEMPLATE_FILE = "model_card.template.yaml"


def _model(run: facts.Run) -> Optional[dict]:
    trainer = run.components.get("Trainer")
    model = trainer.output("model") if trainer else None
    if model is None:
        return None
    code_version = None
    custom = trainer.execution.custom_properties.get("custom_config")
    if custom is not None and custom.string_value:
        code_version = json.loads(custom.string_value).get("code_version")
    examples = run.output("CsvExampleGen", "examples")
    created = datetime.datetime.fromtimestamp(model.create_time_since_epoch / 1000, datetime.timezone.utc)
    return {"id": model.id, "uri": model.uri, "created": created.isoformat(timespec="seconds"),
            "code_version": code_version, "examples_uri": examples.uri if examples is not None else None}


def _data(run: facts.Run, values: data.ValueFilter, sensitive: List[str]) -> dict:
    result: dict = {}
    statistics = facts.statistics(run)
    if statistics:
        result["statistics"] = data.statistics_table(statistics, values, run.config.review.min_count, sensitive)
    schema = run.output("ImportSchemaGen", "schema") or run.output("SchemaGen", "schema")
    if schema is not None and os.path.isfile(os.path.join(schema.uri, data.SCHEMA_FILE)):
        result["schema"] = data.schema_table(data.load_schema(schema.uri), values, sensitive)
    return result


def _lineage(run: facts.Run) -> dict:
    drawn = lineage.from_components(run.store, run.components, run.run_id)
    return drawn.to_dict()


def notes(report: dict) -> List[str]:
    """One sentence per thing a reviewer cannot see in this run (a failed Evaluator, no baseline)."""
    summary = report["summary"]
    found = []
    if summary.get("evaluation_note"):
        found.append(summary["evaluation_note"])
    elif summary.get("has_baseline") is False:
        found.append("There is no baseline for this run (the first blessed model), so the metrics are judged by "
                     "the value thresholds alone and no slice is compared with a baseline.")
    return found


def card_note(report: dict) -> Optional[str]:
    placeholders = report["model_card"]["placeholders"]
    if not placeholders:
        return None
    return (f"The model card has {len(placeholders)} human part(s) still to write in "
            f"{report['model_card']['human_parts_file']}.")


def build(config: PipelineConfig, run_id: Optional[str] = None, config_path: Optional[str] = None) -> dict:
    """The review of a run (the latest without `run_id`). Raises facts.ReviewProblem when there is no
    run to review and model_card.CardError for an unreadable model-card YAML."""
    run = facts.open_run(config, run_id)
    evaluation = facts.load_evaluation(run)
    summary = facts.collect(config, run=run, evaluation=evaluation)
    values = facts.value_filter(run)
    sensitive = [f.name for f in config.features if f.sensitive]
    review = config.review
    report = {
        "format": FORMAT,
        "pipeline": config.name,
        "task": config.task,
        "run_id": run.run_id,
        "config": {"path": config_path, "fingerprint": config.fingerprint()},
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "privacy": {"min_count": review.min_count, "sensitive_features": sensitive},
        "summary": summary,
        "model": _model(run),
        "slices": None,
        "plots": None,
        "fairness": None,
        "data": _data(run, values, sensitive),
        "lineage": _lineage(run),
    }
    if evaluation is not None:
        names = metric_names.evaluated_metrics(config)
        report["slices"] = tfma_results.slices(evaluation, names, review.min_slice_size, review.min_count)
        report["plots"] = tfma_results.plots(evaluation, config.task, review.min_count)
        report["fairness"] = fairness_view.fairness(evaluation, config.evaluation.fairness.features, sensitive,
                                                    review.min_count)
    report["model_card"] = model_card.build(config, report, model_card.load_human_parts(review.model_card))
    report["notes"] = notes(report)
    report["model_card"]["note"] = card_note(report)
    return _finite(report)


def _finite(value):
    """JSON has no NaN or infinity: undefined numbers become None."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def output_dir(config: PipelineConfig, run_id: str) -> str:
    return os.path.abspath(os.path.join(config.output.root, "review", config.name, re.sub(r"[^\w.-]", "-", run_id)))


def write(config: PipelineConfig, report: dict, directory: Optional[str] = None) -> dict:
    """Writes the review files; returns {kind: path}."""
    directory = directory or output_dir(config, report["run_id"])
    os.makedirs(directory, exist_ok=True)
    paths = {kind: os.path.join(directory, name) for kind, name in FILES.items()}
    contents = {
        "html": html.page(report),
        "json": json.dumps(report, indent=1, sort_keys=False),
        "card_markdown": model_card.markdown(report["model_card"]),
        "card_json": json.dumps(report["model_card"], indent=1),
    }
    if report["model_card"]["placeholders"] and not os.path.isfile(config.review.model_card or ""):
        paths["card_template"] = os.path.join(directory, TEMPLATE_FILE)
        contents["card_template"] = model_card.template()
    for kind, path in paths.items():
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(contents[kind])
        os.replace(temporary, path)
    return paths


def list_runs(config: PipelineConfig) -> List[dict]:
    """The pipeline's runs, oldest first: id and a line on what happened."""
    from metadata import runs, store

    if not store.has_store(config):
        return []
    metadata_store = store.open_store(config)
    listed = []
    for info in runs.list_runs(metadata_store, config.name):
        components = runs.run(metadata_store, config.name, info.run_id)
        failed = [name for name, c in components.items() if not c.succeeded]
        blessing = components["Evaluator"].output("blessing") if "Evaluator" in components else None
        blessed = blessing is not None and "blessed" in blessing.custom_properties and \
            blessing.custom_properties["blessed"].int_value == 1
        state = f"failed at {failed[0]}" if failed else ("blessed" if blessed else
                                                         "not blessed" if blessing is not None else "no evaluation")
        listed.append({"run_id": info.run_id, "summary": f"{len(components)} components, {state}"})
    return listed

"""The model card (Mitchell et al., "Model Cards for Model Reporting", 2019): its nine sections,
filled from ML Metadata, TFMA and TFDV wherever the run has the facts, and from a reviewed YAML
(`review.model_card`, by default <config name>.model_card.yaml beside the config) for what only
people know. Written as Markdown with Hugging Face-style YAML front matter and as JSON.

A human part that is missing or still starts with "TODO" is a placeholder; `tfxline review --strict`
fails while any is left."""
import dataclasses
import importlib.metadata
import os
from typing import Dict, List, Optional

import yaml

PLACEHOLDER = "TODO"
SECTIONS = (
    ("model_details", "Model details"),
    ("intended_use", "Intended use"),
    ("factors", "Factors"),
    ("metrics", "Metrics"),
    ("evaluation_data", "Evaluation data"),
    ("training_data", "Training data"),
    ("quantitative_analyses", "Quantitative analyses"),
    ("ethical_considerations", "Ethical considerations"),
    ("caveats_and_recommendations", "Caveats and recommendations"),
)
# section -> field -> the question a reviewer answers
HUMAN_PARTS: Dict[str, Dict[str, str]] = {
    "model_details": {
        "developers": "who built the model (person or team)",
        "contact": "where to send questions and reports about the model",
        "license": "the licence of the model (an SPDX id, e.g. apache-2.0)",
    },
    "intended_use": {
        "primary_uses": "what the model's scores are for",
        "primary_users": "who uses the scores",
        "out_of_scope": "uses the model is not meant for",
    },
    "factors": {
        "relevant_factors": "groups, conditions or environments in which performance may differ",
    },
    "evaluation_data": {
        "motivation": "why this evaluation data represents the model's use",
    },
    "training_data": {
        "provenance": "where the training data comes from, who collected it and how",
    },
    "ethical_considerations": {
        "risks": "harms the model's use could cause, and to whom",
        "mitigations": "what limits those risks",
    },
    "caveats_and_recommendations": {
        "recommendations": "what a user of the scores should know or do",
    },
}
AUTO_SOURCES = ("mlmd", "tfma", "tfdv")


class CardError(ValueError):
    """The reviewed YAML is unreadable or has unknown parts; one line."""


@dataclasses.dataclass
class Field:
    name: str
    value: object
    source: str  # mlmd, tfma, tfdv, config, environment, human, placeholder


def template() -> str:
    """The reviewed YAML with every human part a placeholder."""
    lines = ["# The model card's human parts, reviewed by people. `tfxline review --strict` fails while a value",
             f"# still starts with {PLACEHOLDER}. Everything else in the card comes from the pipeline run."]
    for section, fields in HUMAN_PARTS.items():
        lines.append(f"{section}:")
        for name, question in fields.items():
            lines.append(f"  {name}: \"{PLACEHOLDER}: {question}\"")
    return "\n".join(lines) + "\n"


def load_human_parts(path: Optional[str]) -> Dict[str, Dict[str, str]]:
    """The reviewed answers ({} when there is no file yet); unknown sections or fields are an error."""
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path) as handle:
            raw = yaml.safe_load(handle) or {}
    except yaml.YAMLError as error:
        raise CardError(f"{path} is not valid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(raw, dict):
        raise CardError(f"{path}: expected a mapping of sections ({', '.join(HUMAN_PARTS)})")
    for section, fields in raw.items():
        if section not in HUMAN_PARTS:
            raise CardError(f"{path}: unknown section '{section}' (known: {', '.join(HUMAN_PARTS)})")
        if not isinstance(fields, dict):
            raise CardError(f"{path}: '{section}' must map field names to text")
        unknown = sorted(set(fields) - set(HUMAN_PARTS[section]))
        if unknown:
            raise CardError(f"{path}: unknown field(s) {unknown} in '{section}' "
                            f"(known: {', '.join(HUMAN_PARTS[section])})")
    return {section: {name: str(value).strip() for name, value in fields.items() if value is not None}
            for section, fields in raw.items()}


def is_placeholder(value) -> bool:
    return not str(value or "").strip() or str(value).strip().upper().startswith(PLACEHOLDER)


def _versions() -> str:
    found = []
    for name in ("tensorflow", "tfx", "tensorflow-model-analysis", "tensorflow-data-validation"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _metric_summary(metrics: dict) -> List[dict]:
    return [{"metric": name, "value": row["candidate"], "baseline": row["baseline"], "threshold": row["threshold"]}
            for name, row in metrics.items()]


def build(config, report: dict, human: Dict[str, Dict[str, str]]) -> dict:
    """The card as JSON-ready data: {"front_matter", "sections": [{"id", "title", "fields"}], ...}."""
    summary = report["summary"]
    model = report.get("model") or {}
    slices = report.get("slices")
    fairness = report.get("fairness")
    data = report.get("data") or {}
    metrics = summary.get("metrics") or {}
    features = config.features
    sensitive = [f.name for f in features if f.sensitive]
    task_kind = {"binary": "binary classifier", "multiclass": f"{len(config.label.classes or [])}-class classifier",
                 "regression": "regression model"}[config.task]
    training = config.training
    rows = summary.get("rows") or {}
    edge = summary.get("edge") or {}
    fields: Dict[str, List[Field]] = {section: [] for section, _ in SECTIONS}

    def add(section: str, name: str, value, source: str) -> None:
        if value is not None and value != [] and value != {}:
            fields[section].append(Field(name, value, source))

    add("model_details", "name", config.name, "config")
    add("model_details", "version", summary.get("pushed_version"), "mlmd")
    add("model_details", "pipeline_run", summary.get("run_id"), "mlmd")
    add("model_details", "model_artifact", model.get("uri"), "mlmd")
    add("model_details", "trained_at", model.get("created"), "mlmd")
    add("model_details", "trainer_code_version", model.get("code_version"), "mlmd")
    add("model_details", "type", f"{task_kind}: Keras network, hidden units {training.hidden_units}, "
        f"embeddings of {training.embedding_dim}, {training.epochs} epochs", "config")
    add("model_details", "framework", _versions(), "environment")
    add("model_details", "config_fingerprint", config.fingerprint(), "config")
    add("model_details", "serving_path", summary.get("pushed_path"), "mlmd")
    if edge.get("exported"):
        add("model_details", "tflite_version", edge.get("version"), "mlmd")
        add("model_details", "tflite_files", edge.get("files"), "mlmd")
    add("intended_use", "output", f"'{config.label.name}': " + (
        f"probability that {config.label.column} {_label_rule(config)}" if config.task == "binary" else
        f"{config.label.column}"), "config")
    add("factors", "grouping_features", [f["feature"] for f in (fairness or {}).get("features", [])] or None,
        "tfma")
    add("factors", "sensitive_features", sensitive or None, "config")
    add("factors", "slices_evaluated", [", ".join(keys) or "(all eval rows)" for keys in config.evaluation.slices],
        "config")
    add("metrics", "performance_measures", list(metrics) or None, "tfma")
    add("metrics", "thresholds", {name: row["threshold"] for name, row in metrics.items() if row["threshold"]} or None,
        "tfma")
    if fairness:
        add("metrics", "decision_threshold", fairness["decision_threshold"], "tfma")
        add("metrics", "fairness_bounds", {f"{f['feature']} {gap}": value["bound"] for f in fairness["features"]
                                           for gap, value in f["gaps"].items() if value["bound"] is not None} or None,
            "tfma")
        add("metrics", "variation", "95% Wilson intervals on each group's rates; groups under "
            f"{fairness['min_group_size']} examples are not compared", "tfma")
    add("evaluation_data", "split", "eval", "mlmd")
    add("evaluation_data", "rows", rows.get("eval"), "tfdv")
    add("evaluation_data", "span", summary.get("span"), "mlmd")
    add("evaluation_data", "examples_artifact", model.get("examples_uri"), "mlmd")
    add("training_data", "rows", rows.get("train"), "tfdv")
    add("training_data", "span", summary.get("span"), "mlmd")
    add("training_data", "features", [f"{f.name} ({f.kind})" for f in features], "config")
    add("training_data", "label", f"{config.label.name} from {config.label.column}, rule {config.label.rule}", "config")
    schema = data.get("schema") or {}
    add("training_data", "schema_features", len(schema.get("features", [])) or None, "tfdv")
    anomalies = summary.get("anomalies")
    add("training_data", "anomalies", "none" if anomalies == [] else (len(anomalies) if anomalies else None), "tfdv")
    add("training_data", "drift", ("not checked" if not summary.get("drift", {}).get("checked") else
                                   summary["drift"]["exceeded"] or "within thresholds"), "tfdv")
    add("quantitative_analyses", "overall", _metric_summary(metrics) or None, "tfma")
    add("quantitative_analyses", "blessed", summary.get("blessed"), "mlmd")
    add("quantitative_analyses", "validation_failures",
        [failure["text"] for failure in summary.get("validation_failures", [])] or None, "tfma")
    if slices:
        primary = slices["primary"]
        ranked = [row for row in slices["rows"] if row["rank"] is not None][:3]
        add("quantitative_analyses", f"weakest_slices_by_{primary}",
            [{"slice": row["slice"], primary: row["metrics"][primary]["candidate"], "count": row["count"]}
             for row in ranked] or None, "tfma")
        add("quantitative_analyses", "regressed_slices",
            [row["slice"] for row in slices["rows"] if row["regressed"]] or "none", "tfma")
        add("quantitative_analyses", "insufficient_data_slices",
            sum(1 for row in slices["rows"] if not row["sufficient"]), "tfma")
    if fairness:
        add("quantitative_analyses", "group_gaps",
            {f"{f['feature']} {gap}": value["value"] for f in fairness["features"]
             for gap, value in f["gaps"].items()}, "tfma")
    if edge.get("parity"):
        add("quantitative_analyses", "tflite_parity", edge["parity"], "mlmd")
    add("ethical_considerations", "sensitive_data",
        (f"sensitive features: {', '.join(sensitive)}; " if sensitive else "no feature is marked sensitive; ")
        + f"this card and the review show only aggregates of at least {config.review.min_count} examples, "
          "never single examples", "config")
    if slices:
        small = sum(1 for row in slices["rows"] if not row["sufficient"])
        add("caveats_and_recommendations", "small_slices",
            f"{small} slices have fewer than {slices['min_slice_size']} eval examples: their metrics are noisy",
            "tfma")

    placeholders = []
    for section, parts in HUMAN_PARTS.items():
        given = human.get(section, {})
        for name, question in parts.items():
            value = given.get(name)
            if is_placeholder(value):
                placeholders.append(f"{section}.{name}")
                fields[section].append(Field(name, value or f"{PLACEHOLDER}: {question}", "placeholder"))
            else:
                fields[section].append(Field(name, value, "human"))

    license_name = human.get("model_details", {}).get("license")
    card = {
        "front_matter": _front_matter(config, summary, None if is_placeholder(license_name) else license_name),
        "sections": [{"id": section, "title": title, "fields": [dataclasses.asdict(f) for f in fields[section]]}
                     for section, title in SECTIONS],
        "placeholders": placeholders,
        "auto_filled": sum(1 for section in fields.values() for f in section if f.source in AUTO_SOURCES),
        "human_parts_file": config.review.model_card,
    }
    return card


def _label_rule(config) -> str:
    label = config.label
    if label.rule == "above":
        return f"> {label.threshold:g}"
    if label.rule == "fraction_of_column_above":
        return f"> {label.threshold:g} x {label.of_column}"
    return "is 1"


def _front_matter(config, summary: dict, license_name: Optional[str]) -> dict:
    task_type = "tabular-regression" if config.task == "regression" else "tabular-classification"
    dataset = os.path.basename(os.path.normpath(config.data.path)) or config.data.path
    metrics = summary.get("metrics") or {}
    return {
        "license": license_name or "other",
        "library_name": "tensorflow",
        "tags": ["tfx", "tfxline", task_type],
        "datasets": [dataset],
        "metrics": list(metrics),
        "model-index": [{
            "name": config.name,
            "results": [{
                "task": {"type": task_type, "name": config.task},
                "dataset": {"name": dataset, "type": "csv", "split": "eval"},
                "metrics": [{"type": name, "name": name, "value": row["candidate"]}
                            for name, row in metrics.items() if row["candidate"] is not None],
            }],
        }],
    }


def _markdown_value(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_markdown_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return "; ".join(", ".join(f"{k} {_markdown_value(v)}" for k, v in item.items()) for item in value)
        return ", ".join(_markdown_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(card: dict) -> str:
    front = yaml.safe_dump(card["front_matter"], sort_keys=False, allow_unicode=True).strip()
    name = card["front_matter"]["model-index"][0]["name"]
    lines = ["---", front, "---", "", f"# Model card: {name}", ""]
    if card["placeholders"]:
        lines += [f"> {len(card['placeholders'])} part(s) still to be written by a reviewer "
                  f"({card['human_parts_file']}): {', '.join(card['placeholders'])}.", ""]
    for section in card["sections"]:
        lines += [f"## {section['title']}", ""]
        for field in section["fields"]:
            marker = " *(placeholder)*" if field["source"] == "placeholder" else ""
            lines.append(f"- **{field['name'].replace('_', ' ')}**: {_markdown_value(field['value'])}{marker}")
        lines.append("")
    return "\n".join(lines)

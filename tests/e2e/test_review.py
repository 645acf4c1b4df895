"""`tfxline review` on a real run: the report's numbers against TFMA's own API, the page in headless
Chromium with the network cut off, privacy, the model card and the lineage against ML Metadata."""
import collections
import io
import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import yaml
from ml_metadata.proto import metadata_store_pb2

from config import resolve_path
from tests import browser
from tests.conftest import write_config
from tests.helpers import TFXLINE, eval_examples, latest_artifact_uri, store_for

pytestmark = pytest.mark.e2e
MAX_BYTES = 1.5 * 2 ** 20


def review(config_path: Path, *flags, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([TFXLINE, "review", "--config", str(config_path), *flags], capture_output=True, text=True,
                          timeout=300, cwd=cwd or config_path.parent, env=env)


@pytest.fixture(scope="module")
def reviewed(taxi_run):
    result = review(taxi_run.root / "config.yaml")
    assert result.returncode == 0, result.stderr
    html_path = Path(result.stdout.strip())
    assert html_path.name == "review.html" and html_path.is_file()
    report = json.loads((html_path.parent / "review.json").read_text())
    return html_path, report


def test_the_report_is_one_self_contained_file_with_its_json_and_card(reviewed):
    html_path, report = reviewed
    page = html_path.read_text()
    assert html_path.stat().st_size <= MAX_BYTES
    assert "<script" not in page.lower()
    assert not re.search(r"""<(link|img|iframe|source|video|audio|object|embed)\b""", page, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"url\((?!#)", page)  # no CSS-loaded resources (url(#id) is a reference in the page)
    for name in ("model_card.md", "model_card.json"):
        assert (html_path.parent / name).is_file()
    for section in ("summary", "slices", "plots", "fairness", "data", "lineage", "model-card"):
        assert f'<section id="{section}">' in page
    assert report["format"] == "tfxline-review/1" and report["run_id"] in page
    charts = page.split('<div class="chart">')[1:]
    assert len(charts) == 4  # ROC, precision-recall, calibration, confusion matrix
    assert all("<svg" in chart.split("</div>")[0] and "<table>" in chart.split("</div>")[0] for chart in charts)


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and (b is None or math.isnan(b))
    return abs(a - b) <= 1e-9


def tfma_values(evaluation_uri: str):
    """{slice label: {(name, model, is_diff): value}} and the cross-slice values, read with TFMA's API."""
    single, cross = {}, {}

    def label(key):
        items = []
        for s in key.single_slice_keys:
            value = getattr(s, s.WhichOneof("kind"))
            items.append(f"{s.column}={value.decode() if isinstance(value, bytes) else value}")
        return ", ".join(items) or "(all eval rows)"

    for record in tfma.load_metrics(evaluation_uri):
        values = {(kv.key.name, kv.key.model_name, kv.key.is_diff): kv.value.double_value.value
                  for kv in record.metric_keys_and_values if kv.value.HasField("double_value")}
        if record.HasField("cross_slice_key"):
            cross[(label(record.cross_slice_key.baseline_slice_key),
                   label(record.cross_slice_key.comparison_slice_key))] = values
        else:
            single[label(record.slice_key)] = values
    return single, cross


def test_the_numbers_are_tfmas_own(reviewed, taxi_run):
    _, report = reviewed
    uri = next(node["uri"] for node in report["lineage"]["nodes"] if node["step"] == "evaluation")
    single, cross = tfma_values(uri)
    models = {m for values in single.values() for _, m, _ in values}
    candidate = "candidate" if "candidate" in models else ""
    baseline = "baseline" if "baseline" in models else None
    assert report["summary"]["has_baseline"] == (baseline is not None)
    checked = 0
    for name, row in report["summary"]["metrics"].items():
        assert close(row["candidate"], single["(all eval rows)"][(name, candidate, False)])
        if baseline:
            assert close(row["baseline"], single["(all eval rows)"][(name, baseline, False)])
            assert close(row["delta"], single["(all eval rows)"][(name, candidate, True)])
        checked += 1
    rows = report["slices"]["rows"]
    assert {row["slice"] for row in rows} == {label for label, values in single.items()
                                              if values[("example_count", candidate, False)] >= 10}
    for row in rows:
        values = single[row["slice"]]
        assert row["count"] == values[("example_count", candidate, False)]
        for name, metric in row["metrics"].items():
            assert close(metric["candidate"], values.get((name, candidate, False))), (row["slice"], name)
            if baseline:
                assert close(metric["baseline"], values.get((name, baseline, False)))
                assert close(metric["delta"], values.get((name, candidate, True)))
            checked += 1
    fairness = report["fairness"]
    for feature in fairness["features"]:
        eligible = []
        for group in feature["groups"]:
            values = single[group["slice"]]
            assert group["count"] == values[("example_count", candidate, False)]
            for rate in ("selection_rate", "true_positive_rate", "false_positive_rate", "false_negative_rate"):
                assert close(group[rate]["value"], values.get((rate, candidate, False))), (group["slice"], rate)
                checked += 1
            if group["sufficient"]:
                eligible.append(group["slice"])
        for gap, value in feature["gaps"].items():
            pairs = [cross[(a, b)][(gap, candidate, False)] for a in eligible for b in eligible]
            assert close(value["value"], max(pairs) if pairs else None)
    validation = tfma.load_validation_result(uri)
    assert report["summary"]["blessed"] == validation.validation_ok
    failed = {(f.metric_key.name, f.metric_value.double_value.value) for s in validation.metric_validations_per_slice
              for f in s.failures}
    assert {(f["metric"], f["value"]) for f in report["summary"]["validation_failures"]} <= failed
    assert checked > 50
    assert uri == latest_artifact_uri(taxi_run.config, "Evaluator", "evaluation")


def test_chromium_offline_loads_only_the_file_logs_nothing_and_draws_the_page(reviewed):
    html_path, _ = reviewed
    executable = browser.find_browser()
    assert executable, "needs Debian's chromium-headless-shell (or chromium): make test installs it"
    url = html_path.as_uri()
    visit = browser.visit(url, executable)
    assert visit.requests == [url]
    assert [entry for entry in visit.console if entry["level"] in ("error", "warning", "assert")] == []
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(visit.screenshot)).convert("L")
    assert image.size == (1280, 2400)
    stat = ImageStat.Stat(image)
    assert stat.var[0] > 200  # text, tables and charts, not a blank page
    histogram = image.histogram()
    assert max(histogram) / sum(histogram) < 0.95


def eval_values(taxi_run, names):
    """feature -> Counter of its raw values over the run's eval split."""
    counts = {name: collections.Counter() for name in names}
    for record in eval_examples(taxi_run.config, limit=100000):
        features = tf.train.Example.FromString(record).features.feature
        for name in names:
            feature = features.get(name)
            kind = feature.WhichOneof("kind") if feature is not None else None
            for value in (getattr(feature, kind).value if kind else []):
                counts[name][value.decode() if isinstance(value, bytes) else value] += 1
    return counts


def test_privacy_aggregates_of_at_least_k_and_no_rare_value(reviewed, taxi_run):
    html_path, report = reviewed
    k = report["privacy"]["min_count"]
    texts = [html_path.read_text(), (html_path.parent / "review.json").read_text(),
             (html_path.parent / "model_card.md").read_text(), (html_path.parent / "model_card.json").read_text()]
    assert all(row["count"] >= k for row in report["slices"]["rows"])
    assert all(group["count"] >= k for feature in report["fairness"]["features"] for group in feature["groups"])
    strings = [f.name for f in taxi_run.config.features if f.kind == "categorical_string"]
    counts = eval_values(taxi_run, strings)
    for name in strings:
        common = [value for value, n in counts[name].items() if n >= k]
        rare = [value for value, n in counts[name].items()
                if n < k and len(value) >= 3 and not any(value in c for c in common)]
        assert rare, f"the sample should have rare {name} values"
        for value in rare:
            for text in texts:
                assert value not in text and json.dumps(value)[1:-1] not in text, (name, value)
    numeric = [f.name for f in taxi_run.config.features if f.kind in ("numeric", "bucketized")]
    counts = eval_values(taxi_run, numeric)
    statistics = report["data"]["statistics"]["eval"]["features"]
    for row in statistics:
        assert not {"min", "max", "median"} & set(row.get("numeric", {}))
        if row["feature"] in counts and "numeric" in row:
            extremes = [v for v in (min(counts[row["feature"]]), max(counts[row["feature"]]))
                        if counts[row["feature"]][v] < k]
            assert not set(extremes) & set(row["numeric"].get("deciles", [])), row["feature"]
    rows = sum(report["summary"]["rows"].values())

    def longest_list(value):
        if isinstance(value, dict):
            return max([longest_list(v) for v in value.values()] or [0])
        if isinstance(value, list):
            return max([len(value)] + [longest_list(v) for v in value])
        return 0

    assert longest_list(report) < report["summary"]["rows"]["eval"] < rows  # nothing per example


def test_the_model_card_has_the_nine_sections_and_is_filled_from_the_run(reviewed, taxi_run, tmp_path):
    html_path, report = reviewed
    card = json.loads((html_path.parent / "model_card.json").read_text())
    assert [s["title"] for s in card["sections"]] == [
        "Model details", "Intended use", "Factors", "Metrics", "Evaluation data", "Training data",
        "Quantitative analyses", "Ethical considerations", "Caveats and recommendations"]
    auto = [f for s in card["sections"] for f in s["fields"] if f["source"] in ("mlmd", "tfma", "tfdv")]
    assert len(auto) >= 20 and card["auto_filled"] == len(auto)
    by_name = {f["name"]: f["value"] for s in card["sections"] for f in s["fields"]}
    assert by_name["pipeline_run"] == report["run_id"]
    assert by_name["rows"] in report["summary"]["rows"].values()
    markdown = (html_path.parent / "model_card.md").read_text()
    front = yaml.safe_load(markdown.split("---\n")[1])
    index = front["model-index"][0]
    assert index["name"] == "taxi" and front["license"] == "other"  # no reviewed licence yet
    assert {m["type"]: m["value"] for m in index["results"][0]["metrics"]} == {
        name: row["candidate"] for name, row in report["summary"]["metrics"].items()}
    # No reviewed YAML beside this config: --strict refuses in one line, and names where to write it.
    strict = review(taxi_run.root / "config.yaml", "--strict", "--output", str(tmp_path / "strict"))
    assert strict.returncode == 1 and len(strict.stderr.strip().splitlines()) == 1
    assert "--strict: the model card still has 12 placeholder(s)" in strict.stderr
    assert str(taxi_run.root / "config.model_card.yaml") in strict.stderr
    # The same run with the shipped, reviewed taxi card: --strict passes.
    reviewed_config = write_config(tmp_path / "with_card", data={"path": str(taxi_run.config.data.path)},
                                   output={"root": str(taxi_run.config.output.root)},
                                   review={"model_card": resolve_path("package:config/taxi.model_card.yaml")})
    passed = review(reviewed_config, "--strict", "--output", str(tmp_path / "passed"))
    assert passed.returncode == 0, passed.stderr
    card = json.loads((tmp_path / "passed" / "model_card.json").read_text())
    assert card["placeholders"] == [] and card["front_matter"]["license"] == "apache-2.0"


def test_a_bad_model_card_yaml_is_one_line(taxi_run, tmp_path):
    card = tmp_path / "card.yaml"
    card.write_text("intended_use: {purpose: x}\n")
    config = write_config(tmp_path / "bad", data={"path": str(taxi_run.config.data.path)},
                          output={"root": str(taxi_run.config.output.root)}, review={"model_card": str(card)})
    result = review(config)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("tfxline review: ") and "unknown field(s) ['purpose'] in 'intended_use'" \
        in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_lineage_is_what_ml_metadata_recorded(reviewed, taxi_run):
    """Read back with ml_metadata's own calls: the run's executions, their output events, the artifacts' types."""
    _, report = reviewed
    store = store_for(taxi_run.config)
    run = store.get_context_by_type_and_name("pipeline_run", report["run_id"])
    executions = store.get_executions_by_context(run.id)
    events = store.get_events_by_execution_ids([e.id for e in executions])
    outputs = {e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT}
    types = {t.id: t.name for t in store.get_artifact_types()}
    expected = collections.Counter(types[a.type_id] for a in store.get_artifacts_by_id(list(outputs))
                                   if types[a.type_id] != "ModelRun")
    drawn = collections.Counter(n["artifact_type"] for n in report["lineage"]["nodes"] if n["producer"])
    assert drawn == expected
    assert [n["step"] for n in report["lineage"]["nodes"] if n["role"] != "baseline"] == [
        "span", "statistics", "schema", "anomalies", "gate", "profile", "drift", "transform", "model", "evaluation",
        "blessing", "push", "tflite", "drift_baseline"]
    roles = {(n["step"], n["producer"]) for n in report["lineage"]["nodes"] if n["role"] == "baseline"}
    assert roles == {("model", "ServingBaseline"), ("drift_baseline", "ServingBaseline")}
    inputs = {(e.artifact_id, e.execution_id) for e in events if e.type == metadata_store_pb2.Event.INPUT}
    by_execution = collections.defaultdict(set)
    for event in events:
        if event.type == metadata_store_pb2.Event.OUTPUT:
            by_execution[event.execution_id].add(event.artifact_id)
    expected_edges = {(source, target) for source, execution in inputs for target in by_execution[execution]}
    assert {(e["source"], e["target"]) for e in report["lineage"]["edges"]} == expected_edges


def test_the_same_review_written_twice_is_the_same_but_for_its_time(reviewed, taxi_run, tmp_path):
    _, first = reviewed
    again = review(taxi_run.root / "config.yaml", "--run", first["run_id"], "--output", str(tmp_path))
    assert again.returncode == 0 and Path(again.stdout.strip()) == tmp_path / "review.html"
    second = json.loads((tmp_path / "review.json").read_text())
    first, second = dict(first), dict(second)
    for report in (first, second):
        report.pop("generated")
    assert first == second


def test_the_review_is_the_same_with_tfma_imported(reviewed, taxi_run, tmp_path):
    """The review-tfma-protos speed-up off: TFMA is imported and its own modules parse the same files."""
    _, first = reviewed
    env = {**os.environ, "TFXLINE_SPEEDUPS": "-review-tfma-protos"}
    again = review(taxi_run.root / "config.yaml", "--run", first["run_id"], "--output", str(tmp_path), env=env)
    assert again.returncode == 0, again.stderr
    second = json.loads((tmp_path / "review.json").read_text())
    first, second = dict(first), dict(second)
    for report in (first, second):
        report.pop("generated")
    assert first == second

"""The fairness gate end to end, through the installed command: a model trained on data in which one
company's labels are flipped is refused by the Evaluator and not pushed, with the reason in the run's
summary and the review; its numbers equal fairlearn's on the eval rows and the model's own scores.
On the way, the states a reviewer meets: no run yet, no baseline, a failed Evaluator."""
import collections
import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from fairlearn import metrics as fairlearn_metrics

from components.tflite_export.parity import saved_model_outputs
from config import load_config, resolve_path
from metadata import runs
from tests.conftest import SMALL_TAXI_ROWS, TAXI_CONFIG, write_config, write_csv
from tests.helpers import (TFXLINE, execute_notebook, notebook_outputs, pushed_versions, split_examples,
                           store_for)

pytestmark = pytest.mark.e2e
BOUNDS = {"demographic_parity_difference": 0.25, "equalized_odds_difference": 0.35}


def tfxline(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([TFXLINE, *args], capture_output=True, text=True, timeout=900, cwd=cwd)


def flip_labels(header, rows, company):
    """The label is tips > 20% of the fare: the company's big tippers get no tip, the others a big one."""
    index = {name: i for i, name in enumerate(header)}
    flipped = []
    for row in rows:
        row = list(row)
        if row[index["company"]] == company and row[index["fare"]] and float(row[index["fare"]]) > 0:
            fare, tips = float(row[index["fare"]]), float(row[index["tips"]] or 0)
            row[index["tips"]] = "0" if tips > 0.2 * fare else f"{0.5 * fare:.2f}"
        flipped.append(row)
    return flipped


def review(config, cwd):
    result = tfxline("review", "--config", str(config), cwd=cwd)
    report = None
    if result.returncode == 0:
        report = json.loads((Path(result.stdout.strip()).parent / "review.json").read_text())
    return result, report


def printed(notebook) -> str:
    outputs = notebook_outputs(notebook)
    assert not [kind for kind, _ in outputs if kind == "error" or kind == "stream:stderr"]
    return "".join(text for kind, text in outputs if kind == "stream:stdout")


@pytest.fixture(scope="module")
def gate(tmp_path_factory, taxi_rows):
    root = tmp_path_factory.mktemp("fairness_gate")
    header, rows = taxi_rows
    sample = random.Random(7).sample(rows, SMALL_TAXI_ROWS)
    company = collections.Counter(row[header.index("company")] for row in sample if row[header.index("company")])
    flipped_company = company.most_common(1)[0][0]
    write_csv(root / "data" / "data.csv", header, sample)
    write_csv(root / "biased" / "data.csv", header, flip_labels(header, sample, flipped_company))
    with open(resolve_path(TAXI_CONFIG)) as handle:
        features = yaml.safe_load(handle)["features"]
    for feature in features:
        feature["sensitive"] = feature["name"] == "company"
    settings = dict(features=features, output={"root": str(root / "out")},
                    evaluation={"fairness": {"features": ["company"], "decision_threshold": 0.5, "min_group_size": 30,
                                             "max_gaps": {"company": BOUNDS}}})
    config_path = write_config(root, data={"path": str(root / "data")}, **settings)
    states = {}

    # Nothing has run yet.
    states["no run"] = (review(config_path, root), execute_notebook("model_review", config_path, root))

    # The first model: blessed on value thresholds alone, there is no baseline.
    first = tfxline("run", "--config", str(config_path), cwd=root)
    assert first.returncode == 0, first.stderr[-3000:]
    states["first"] = (first, *review(config_path, root), execute_notebook("model_review", config_path, root))
    versions = pushed_versions(load_config(str(config_path)))

    # The biased data while the serving model's variables are gone (ServingBaseline copies what is
    # there): the Evaluator fails.
    write_config(root, data={"path": str(root / "biased")}, **settings)
    config = load_config(str(config_path))
    stable = Path(config.output.serving) / config.name / str(versions[0])
    shutil.move(str(stable / "variables"), str(root / "moved"))
    failed = tfxline("run", "--config", str(config_path), cwd=root)
    states["failed"] = (failed, *review(config_path, root), execute_notebook("model_review", config_path, root))

    # The files are back, in the serving directory and in the baseline copy the next run reuses from
    # cache: the Evaluator runs again (Transform and Trainer are reused) and refuses the model.
    baseline = Path(runs.latest_run(store_for(config), config.name)["ServingBaseline"].output("model").uri)
    shutil.copytree(str(root / "moved"), str(baseline / "Format-Serving" / "variables"))
    shutil.move(str(root / "moved"), str(stable / "variables"))
    refused = tfxline("run", "--config", str(config_path), cwd=root)
    assert refused.returncode == 0, refused.stderr[-3000:]
    states["refused"] = (refused, *review(config_path, root))
    return {"root": root, "config": config, "states": states, "versions_after_first": versions,
            "company": flipped_company}


def test_no_run_yet_is_one_sentence_in_the_command_and_the_notebook(gate):
    (result, report), notebook = gate["states"]["no run"]
    assert result.returncode == 1 and report is None and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "has no runs yet" in result.stderr
    text = printed(notebook)
    assert text.startswith("Nothing to review: ") and "has no runs yet" in text and text.count(".") <= 3
    assert not [kind for kind, _ in notebook_outputs(notebook) if kind == "text/html"]


def test_the_first_model_has_no_baseline_and_says_so(gate):
    run, result, report, notebook = gate["states"]["first"]
    assert "blessed     yes, on value thresholds (first model: no baseline yet)" in run.stdout
    assert result.returncode == 0
    sentence = next(note for note in report["notes"] if "no baseline" in note)
    assert f"tfxline review: {sentence}" in result.stderr.splitlines()
    assert sentence in printed(notebook)
    assert report["slices"]["has_baseline"] is False and report["summary"]["blessed"]


def test_a_failed_evaluator_is_one_sentence_and_the_rest_is_still_reviewed(gate):
    run, result, report, notebook = gate["states"]["failed"]
    assert run.returncode == 1 and "Evaluator" in run.stdout and "FAILED" in run.stdout
    assert result.returncode == 0, result.stderr
    sentence = f"The Evaluator failed in run {report['run_id']}"
    lines = [line for line in result.stderr.splitlines() if sentence in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert sentence in printed(notebook)
    assert report["slices"] is None and report["fairness"] is None and report["data"]["statistics"]
    page = (Path(result.stdout.strip())).read_text()
    assert "No evaluation in this run." in page and sentence in page


def test_the_biased_model_is_refused_with_the_reason_and_not_pushed(gate):
    run, result, report = gate["states"]["refused"]
    summary = run.stdout
    assert "blessed     NO: demographic_parity_difference between company=" in summary
    assert "above the bound 0.25" in summary and gate["company"] in summary
    assert "pushed      nothing (the model was not blessed)" in summary
    assert pushed_versions(gate["config"]) == gate["versions_after_first"]
    assert report["summary"]["blessed"] is False and report["summary"]["pushed"] is False
    failures = [f for f in report["summary"]["validation_failures"] if f["kind"] == "gap"]
    assert failures and all(f["value"] > BOUNDS[f["metric"]] and f["threshold"]["upper"] == BOUNDS[f["metric"]]
                            and f["baseline"] is not None for f in failures)
    parity = [f for f in failures if f["metric"] == "demographic_parity_difference"]
    assert parity and all(f["baseline"] < BOUNDS[f["metric"]] for f in parity)  # the baseline was fair
    assert any(gate["company"] in " ".join(f["groups"]) for f in failures)
    assert {f["kind"] for f in report["summary"]["validation_failures"]} == {"gap"}  # AUC and accuracy passed
    page = Path(result.stdout.strip()).read_text()
    assert "not blessed" in page and failures[0]["text"].replace("&", "&amp;") in page
    feature = report["fairness"]["features"][0]
    assert feature["gated"] and feature["sensitive"]
    assert feature["gaps"]["demographic_parity_difference"]["passed"] is False


def test_the_fairness_numbers_equal_fairlearns_on_the_models_own_scores(gate):
    _, _, report = gate["states"]["refused"]
    config = gate["config"]
    components = runs.run(store_for(config), config.name, report["run_id"])
    model = tf.saved_model.load(str(Path(components["Trainer"].output("model").uri) / "Format-Serving"))
    examples = split_examples(components["CsvExampleGen"].output("examples").uri, "eval", 100000)
    scores, labels = saved_model_outputs(model, examples, "scores", config.label.name)
    companies = []
    for record in examples:
        values = tf.train.Example.FromString(record).features.feature["company"].bytes_list.value
        companies.append(values[0].decode() if values else "")
    companies = np.array(companies)
    y_pred = (scores.reshape(-1) > 0.5).astype(int)
    y_true = labels.astype(int)
    feature = report["fairness"]["features"][0]
    by_group = {group["group"]: group for group in feature["groups"]}
    sufficient = [name for name, group in by_group.items() if group["sufficient"]]
    assert len(sufficient) >= 3
    keep = np.isin(companies, sufficient)
    frame = fairlearn_metrics.MetricFrame(
        metrics={"selection_rate": fairlearn_metrics.selection_rate,
                 "true_positive_rate": fairlearn_metrics.true_positive_rate,
                 "false_positive_rate": fairlearn_metrics.false_positive_rate,
                 "false_negative_rate": fairlearn_metrics.false_negative_rate,
                 "count": lambda t, p: len(t)},
        y_true=y_true[keep], y_pred=y_pred[keep], sensitive_features=companies[keep])
    for name in sufficient:
        assert by_group[name]["count"] == frame.by_group.loc[name, "count"]
        for rate in ("selection_rate", "true_positive_rate", "false_positive_rate", "false_negative_rate"):
            assert by_group[name][rate]["value"] == pytest.approx(frame.by_group.loc[name, rate], abs=1e-9)
    assert feature["gaps"]["demographic_parity_difference"]["value"] == pytest.approx(
        fairlearn_metrics.demographic_parity_difference(y_true[keep], y_pred[keep],
                                                        sensitive_features=companies[keep]), abs=1e-9)
    assert feature["gaps"]["equalized_odds_difference"]["value"] == pytest.approx(
        fairlearn_metrics.equalized_odds_difference(y_true[keep], y_pred[keep],
                                                    sensitive_features=companies[keep]), abs=1e-9)


def test_the_sensitive_feature_is_named_in_the_card_and_never_per_example(gate):
    _, result, report = gate["states"]["refused"]
    card = report["model_card"]
    fields = {f["name"]: f["value"] for s in card["sections"] for f in s["fields"]}
    assert fields["sensitive_features"] == ["company"]
    assert "sensitive features: company" in fields["sensitive_data"]
    markdown = (Path(result.stdout.strip()).parent / "model_card.md").read_text()
    assert "**sensitive features**: company" in markdown
    k = report["privacy"]["min_count"]
    assert all(group["count"] >= k for group in report["fairness"]["features"][0]["groups"])
    statistics = {row["feature"]: row for row in report["data"]["statistics"]["eval"]["features"]}
    assert statistics["company"]["sensitive"]
    assert all(top["count"] >= k for top in statistics["company"]["categorical"]["top_values"])

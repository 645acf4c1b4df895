"""Drift inside the pipeline, as the issue's user story: a new span where half the trips have 40x the
trip_miles. Run 1 trains on span 1 and pushes it (no baseline yet). With trip_miles set to `block`, span 2
stops at the DriftGate and nothing is trained or pushed; with the default `warn`, the run goes on and the
summary says trip_miles drifted. Spans are recorded on every Examples artifact in ML Metadata."""
import json
import os
import random
import subprocess

import pytest

from metadata import lineage, runs
from pipeline import summary
from tests.conftest import run_pipeline, write_config, write_csv
from tests.helpers import TFXLINE, progress_fields, pushed_versions, store_for

pytestmark = pytest.mark.e2e
ROWS = 3000


@pytest.fixture(scope="module")
def spans_run(tmp_path_factory, taxi_rows):
    root = tmp_path_factory.mktemp("drift")
    header, rows = taxi_rows
    write_csv(root / "data" / "span-1" / "data.csv", header, random.Random(3).sample(rows, ROWS))
    overrides = {"data": {"path": str(root / "data"), "span_pattern": "span-{SPAN}/*.csv"},
                 "output": {"root": str(root / "out")}}
    config_path = write_config(root / "warn", **overrides)
    config, lines, error = run_pipeline(config_path)
    assert error is None, error
    return root, config_path, overrides, config, lines


def _spans(config):
    return [a.custom_properties["span"].int_value
            for a in lineage.artifacts_of_type(store_for(config), config.name, "Examples")]


def test_first_run_has_no_baseline_and_records_its_span(spans_run):
    root, _, _, config, _ = spans_run
    result = summary.collect(config)
    assert result["drift_gate"]["baseline"] is None and result["pushed"]
    assert "no baseline yet for span 1" in summary.format_summary(result, 1.0)
    assert _spans(config) == [1]
    baselines = lineage.artifacts_of_type(store_for(config), config.name, "tfxline.DriftBaseline")
    published = [b for b in baselines if b.custom_properties["published"].int_value == 1
                 if "published" in b.custom_properties]
    assert [b.custom_properties["span"].int_value for b in published] == [1]
    profiles = os.listdir(os.path.join(config.output.serving, ".training-profiles", config.name))
    assert sorted(profiles) == sorted(str(v) for v in pushed_versions(config))


def test_blocking_drift_stops_before_training_and_pushes_nothing(spans_run):
    root, _, overrides, config, _ = spans_run
    simulated = subprocess.run([TFXLINE, "data", "simulate", "--config", str(root / "warn" / "config.yaml"),
                                "--scale", "trip_miles=40@0.5", "--seed", "1"], capture_output=True, text=True)
    assert simulated.returncode == 0 and "(span 2)" in simulated.stdout, simulated.stderr
    pushed_before = pushed_versions(config)
    block = write_config(root / "block", **overrides, monitoring={"drift": {"features": {"trip_miles": "block"}}})
    # The configured span (TFX's RangeConfig), here also the newest.
    block_raw = block.read_text().replace("span_pattern:", "span: 2\n  span_pattern:")
    block.write_text(block_raw)
    blocked_config, lines, error = run_pipeline(block)
    assert type(error).__name__ == "DriftBlockedError", error
    assert "trip_miles (block)" in str(error) and "nothing was trained or pushed" in str(error)
    assert progress_fields(lines[-1]) == ["DriftGate", "FAILED"]
    latest = runs.latest_run(store_for(blocked_config), config.name)
    assert not {"Transform", "Trainer", "Evaluator", "Pusher"} & set(latest)
    assert pushed_versions(config) == pushed_before
    assert _spans(config) == [1, 2]


def test_warning_drift_goes_on_and_the_summary_says_so(spans_run):
    root, config_path, _, config, _ = spans_run
    _, lines, error = run_pipeline(config_path)
    assert error is None, error
    result = summary.collect(config)
    drift = result["drift_gate"]
    assert drift["span"] == 2 and drift["baseline"]["span"] == 1
    assert [f["feature"] for f in drift["findings"]] == ["trip_miles"]
    assert drift["findings"][0]["action"] == "warn" and drift["findings"][0]["ratio"] > 2
    # TFDV's own comparators ran on the same statistics and are reported beside the verdict.
    assert drift["tfdv"]["trip_miles"][0]["type"] == "JENSEN_SHANNON_DIVERGENCE"
    line = next(x for x in summary.format_summary(result, 1.0).splitlines() if x.startswith("  drift"))
    assert "1 feature(s) drifted, span 2 vs span 1" in line and "trip_miles" in line
    assert "Trainer" in [progress_fields(x)[0] for x in lines if x.endswith("running")]
    report = runs.latest_run(store_for(config), config.name)["DriftGate"].output("report")
    with open(os.path.join(report.uri, "drift_report.json")) as handle:
        assert json.load(handle)["findings"] == drift["findings"]


def test_a_span_missing_a_column_stops_before_any_tfx_work(spans_run):
    root, config_path, _, config, _ = spans_run
    header, rows = _read(root / "data" / "span-1" / "data.csv")
    keep = [i for i, name in enumerate(header) if name != "payment_type"]
    write_csv(root / "data" / "span-3" / "data.csv", [header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    executions_before = sum(len(v) for v in runs.executions_by_component(store_for(config), config.name).values())
    pushed_before = pushed_versions(config)
    result = subprocess.run([TFXLINE, "run", "--config", str(config_path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert "span-3/data.csv: column(s) ['payment_type'] missing from the header" in result.stderr
    assert sum(len(v) for v in runs.executions_by_component(store_for(config), config.name).values()) == \
        executions_before
    assert pushed_versions(config) == pushed_before
    os.remove(root / "data" / "span-3" / "data.csv")


def _read(path):
    import csv

    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]

"""`tfxline monitor` as installed, on requests in each accepted format, against training statistics given as a
file (the e2e tier finds them through ML Metadata): exit codes, report, JSON, TFDV protos, bad input."""
import json
import subprocess
import time

import numpy as np
import pytest
import tensorflow_data_validation as tfdv

from monitoring import statistics, table, tfrecord
from serving.request_log import to_examples
from tests.conftest import write_config
from tests.helpers import TFXLINE

TRAINING_ROWS = slice(0, 6000)
SERVED_ROWS = slice(6000, 12000)


@pytest.fixture(scope="module")
def shuffled(taxi_rows):
    """The taxi CSV is in time order, and its halves really differ; shuffled, training and serving are alike."""
    import random

    header, rows = taxi_rows
    rows = list(rows)
    random.Random(5).shuffle(rows)
    return header, rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shuffled):
    from config import load_config

    root = tmp_path_factory.mktemp("monitor")
    config_path = write_config(root, output={"root": str(root / "out")}, monitoring={"window_rows": 2000})
    config = load_config(str(config_path))
    header, rows = shuffled
    kinds = {f.name: f.kind for f in config.features}
    training = statistics.profile(table.from_rows([dict(zip(header, r)) for r in rows[TRAINING_ROWS]], kinds),
                                  kinds, statistics.Options(), "training")
    stats = statistics.write_profile(str(root / "training"), "train", training)
    return root, config_path, config, stats


def _served(shuffled, config, shift_miles=False):
    header, rows = shuffled
    served = [dict(zip(header, r)) for r in rows[SERVED_ROWS]]
    if shift_miles:
        for index, row in enumerate(served):
            if index % 2 and row["trip_miles"]:
                row["trip_miles"] = str(40 * float(row["trip_miles"]))
    return served


def _tfrecord_log(path, served, config, version=7, start_ms=1_700_000_000_000):
    """The log as the server writes it: serving/request_log.to_examples on the raw inputs of each request."""
    records = []
    for index, row in enumerate(served):
        inputs = {}
        for feature in config.features:
            cell = row[feature.name]
            if cell == "":
                continue
            inputs[feature.name] = np.array([cell.encode()] if feature.kind == "categorical_string" else
                                            [int(cell)] if feature.kind == "categorical_int" else [float(cell)],
                                            object if feature.kind == "categorical_string" else None)
        records += to_examples(version, inputs, {"scores": np.array([[0.5]], np.float32)}, start_ms + 1000 * index)
    tfrecord.write_records(str(path), records)
    return path


def _monitor(config_path, *flags):
    return subprocess.run([TFXLINE, "monitor", "--config", str(config_path), *flags], capture_output=True, text=True,
                          timeout=180)


def test_no_drift_exits_0_with_report_json_and_tfdv_statistics(setup, shuffled, tmp_path):
    root, config_path, config, stats = setup
    log = _tfrecord_log(tmp_path / "taxi.requests.tfrecord", _served(shuffled, config), config)
    result = _monitor(config_path, "--requests", str(log.parent), "--training-stats", stats, "--json",
                      str(tmp_path / "report.json"), "--stats-dir", str(tmp_path / "stats"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "version 7: 6,000 requests" in result.stdout and "verdict: no drift" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["drift"] is False
    comparisons = {c["name"]: c for c in report["versions"][0]["comparisons"]}
    assert set(comparisons) == {"skew", "drift vs previous window", "drift vs training"}
    assert comparisons["drift vs training"]["window_rows"] == 2000
    assert len(comparisons["skew"]["features"]) == len(config.features)
    window = tfdv.load_stats_binary(str(tmp_path / "stats" / "v7-newest.pb"))
    training = tfdv.load_stats_binary(str(tmp_path / "stats" / "v7-training.pb"))
    assert window.datasets[0].num_examples == 2000 and training.datasets[0].num_examples == 6000
    schema = tfdv.load_schema_text(config.schema_.curated_path)
    anomalies = tfdv.validate_statistics(window, schema, environment="SERVING", previous_statistics=training)
    assert {".".join(i.path.step) for i in anomalies.drift_skew_info} == {f.name for f in config.features}


@pytest.mark.parametrize("form", ["jsonl", "csv"])
def test_drift_exits_3_naming_the_feature(setup, shuffled, tmp_path, form):
    root, config_path, config, stats = setup
    served = _served(shuffled, config, shift_miles=True)
    path = tmp_path / f"requests.{form}"
    if form == "jsonl":
        path.write_text("".join(json.dumps({k: v for k, v in r.items() if v != ""}) + "\n" for r in served))
    else:
        import csv

        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(served[0]))
            writer.writeheader()
            writer.writerows(served)
    result = _monitor(config_path, "--requests", str(path), "--training-stats", stats, "--model-version", "3",
                      "--textfile", str(tmp_path / "drift.prom"))
    assert result.returncode == 3, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith("trip_miles")]
    assert lines and all("KS" in line for line in lines)
    assert "verdict: DRIFT" in result.stdout and "version 3 skew" in result.stdout
    gauges = (tmp_path / "drift.prom").read_text()
    assert 'tfxline_drift_verdict{model="taxi",version="3",comparison="skew",feature="trip_miles"} 1.0' in gauges
    assert 'tfxline_drift_verdict{model="taxi",version="3",comparison="skew",feature="fare"} 0.0' in gauges
    lint = subprocess.run(["promtool", "check", "metrics"], input=gauges, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 50])
    return path


@pytest.mark.parametrize("case, problem", [
    ("missing", "no such request log directory or file"),
    ("empty_dir", "no request log of model 'taxi'"),
    ("empty_log", "the request log is empty"),
    ("truncated", "is cut off"),
    ("no_version", "have no model_version; add the column, or pass --model-version"),
    ("no_training_stats", "no ML Metadata at"),
    ("empty_window", "no requests in the last 60 s"),
])
def test_bad_input_is_one_line_and_exit_1(setup, shuffled, tmp_path, case, problem):
    root, config_path, config, stats = setup
    served = _served(shuffled, config)[:500]
    flags = ["--training-stats", stats]
    if case == "missing":
        source = tmp_path / "absent"
    elif case == "empty_dir":
        source = tmp_path
    elif case == "empty_log":
        source = tmp_path / "taxi.requests.tfrecord"
        source.write_bytes(b"")
    elif case == "truncated":
        source = _truncated(_tfrecord_log(tmp_path / "taxi.requests.tfrecord", served, config))
    elif case == "no_version":
        source = tmp_path / "requests.jsonl"
        source.write_text("".join(json.dumps({"trip_miles": float(i)}) + "\n" for i in range(10)))
    elif case == "no_training_stats":
        source, flags = _tfrecord_log(tmp_path / "log.tfrecord", served, config), []
    else:
        source = _tfrecord_log(tmp_path / "log.tfrecord", served, config)
        flags += ["--window-seconds", "60"]
    result = _monitor(config_path, "--requests", str(source), *flags)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("tfxline monitor: ") and problem in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_the_beam_path_gives_the_same_verdicts(setup, shuffled, tmp_path):
    """TFDV on Beam (DirectRunner) computes the statistics instead of numpy: same features flagged, and
    scores close (the quantile sketch's rank error only lowers a KS distance)."""
    root, config_path, config, stats = setup
    served = _served(shuffled, config, shift_miles=True)[:3000]
    (tmp_path / "log").mkdir()
    # One request a second up to now: windows by time end at the clock.
    start_ms = int(time.time() * 1000) - 1000 * len(served)
    log = _tfrecord_log(tmp_path / "log" / "taxi.requests.tfrecord", served, config, start_ms=start_ms)
    reports = {}
    for name, flags in (("numpy", []), ("beam", ["--beam", "--beam-arg=--direct_num_workers=1"])):
        result = _monitor(config_path, "--requests", str(log.parent), "--training-stats", stats, "--window-seconds",
                          str(len(served) / 3), "--until", str(start_ms / 1000 + len(served)), "--json",
                          str(tmp_path / f"{name}.json"), *flags, "--model-version", "7")
        assert result.returncode == 3, result.stdout + result.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    for numpy_c, beam_c in zip(reports["numpy"]["versions"][0]["comparisons"],
                               reports["beam"]["versions"][0]["comparisons"]):
        assert numpy_c["name"] == beam_c["name"] and numpy_c["window_rows"] == beam_c["window_rows"]
        assert [f["feature"] for f in numpy_c["features"] if f["drift"]] == \
            [f["feature"] for f in beam_c["features"] if f["drift"]], numpy_c["name"]
        for a, b in zip(numpy_c["features"], beam_c["features"]):
            assert b["score"] == pytest.approx(a["score"], abs=0.02 if a["test"] == "ks" else 0.5), a["feature"]


def test_serve_exposes_the_gauges_and_a_failing_check_as_down(setup, shuffled, tmp_path):
    import requests as http

    from tests.serving.conftest import free_port, wait_until

    root, config_path, config, stats = setup
    (tmp_path / "log").mkdir()
    log = _tfrecord_log(tmp_path / "log" / "taxi.requests.tfrecord", _served(shuffled, config, shift_miles=True),
                        config)
    processes = {}
    try:
        for name, source in (("good", log.parent), ("bad", tmp_path / "absent")):
            port = free_port()
            processes[name] = (port, subprocess.Popen(
                [TFXLINE, "monitor", "--config", str(config_path), "--requests", str(source), "--training-stats",
                 stats, "--serve", "--host", "127.0.0.1", "--port", str(port), "--interval", "1"],
                stdout=open(tmp_path / f"{name}.log", "w"), stderr=subprocess.STDOUT))

        def metrics(name):
            try:
                return http.get(f"http://127.0.0.1:{processes[name][0]}/metrics", timeout=2).text
            except http.RequestException:
                return ""

        good = wait_until(lambda: "tfxline_drift_verdict{" in metrics("good") and metrics("good"), timeout=120)
        assert 'tfxline_drift_verdict{model="taxi",version="7",comparison="skew",feature="trip_miles"} 1.0' in good
        assert 'tfxline_monitor_up{model="taxi"} 1' in good
        bad = wait_until(lambda: "last_run_timestamp_seconds{model=\"taxi\"} 0.000" not in metrics("bad")
                         and metrics("bad"), timeout=120)
        assert 'tfxline_monitor_up{model="taxi"} 0' in bad and "tfxline_drift_verdict{" not in bad
        assert http.get(f"http://127.0.0.1:{processes['bad'][0]}/other", timeout=2).status_code == 404
        assert processes["bad"][1].poll() is None  # a failing check does not stop the exporter
        assert "no such request log directory or file" in (tmp_path / "bad.log").read_text()
    finally:
        for _, process in processes.values():
            process.terminate()
            process.wait(timeout=20)

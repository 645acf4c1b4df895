"""Concept drift through the installed commands, on a real pipeline run's model: a real `tfxline serve` logs
requests with their ids, labels arrive later (`tfxline feedback ingest`), and `tfxline monitor` reports live
quality beside the version's Evaluator metrics. A span with the same inputs and a changed labelling rule
(`tfxline data simulate --label-threshold`) is concept drift without a data-drift alarm; an unchanged span
shows neither."""
import base64
import csv
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests as http

from tests.conftest import write_config
from tests.helpers import TFXLINE, pushed_versions
from tests.serving.conftest import Server, wait_until

pytestmark = pytest.mark.e2e
ROWS, BATCH = 1500, 50


def _tfxline(*args):
    result = subprocess.run([TFXLINE, *map(str, args)], capture_output=True, text=True, timeout=600)
    return result


def _label(config, row) -> int:
    """The config's rule (tips > 0.2 fare), as the pipeline makes the label."""
    rule = config.label
    if not row[rule.of_column]:
        return 0
    return int(float(row[rule.column] or 0) > rule.threshold * float(row[rule.of_column]))


def _example(row, dtypes):
    import tensorflow as tf

    example = tf.train.Example()
    for name, dtype in dtypes.items():
        cell = row.get(name, "")
        if cell == "":
            continue
        feature = example.features.feature[name]
        if dtype == "string":
            feature.bytes_list.value.append(cell.encode())
        elif dtype == "int64":
            feature.int64_list.value.append(int(float(cell)))
        else:
            feature.float_list.value.append(float(cell))
    return base64.b64encode(example.SerializeToString()).decode()


def _serve_span(server, path, prefix, dtypes):
    """Sends the span's rows in requests of BATCH, each with its own id; returns (id, row index, row)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    sent = []
    for start in range(0, len(rows), BATCH):
        identifier = f"{prefix}-{start // BATCH}"
        batch = rows[start:start + BATCH]
        response = http.post(f"{server.url}/v1/models/taxi:predict", timeout=60,
                             headers={"X-Request-Id": identifier},
                             json={"signature_name": "serving_default",
                                   "instances": [{"b64": _example(r, dtypes)} for r in batch]})
        assert response.status_code == 200 and response.headers["X-Request-Id"] == identifier, response.text
        sent += [(identifier, index, row) for index, row in enumerate(batch)]
    return sent


def _feedback(path, config, sent):
    """The labels, arriving an hour after the requests, in reverse order."""
    later = time.time() + 3600
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request_id", "row", "label", "time"])
        for number, (identifier, index, row) in enumerate(reversed(sent)):
            writer.writerow([identifier, index, _label(config, row), f"{later + number:.3f}"])
    return path


@pytest.fixture(scope="module")
def setup(taxi_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("concept")
    out = root / "out"
    out.mkdir()
    shutil.copy(Path(taxi_run.config.output.root) / "metadata.sqlite", out / "metadata.sqlite")
    log_dir = root / "request_log"
    serving = Path(taxi_run.config.output.serving)
    config_path = write_config(root, data={"path": taxi_run.config.data.path},
                               output={"root": str(out), "serving_dir": str(serving)},
                               monitoring={"request_log_dir": str(log_dir), "window_rows": ROWS,
                                           "concept": {"max_drop": 0.05, "min_labels": 200}})
    for name, extra in (("same", []), ("relabelled", ["--label-threshold", "0.5"])):
        result = _tfxline("data", "simulate", "--config", config_path, "--output", root / f"{name}.csv",
                          "--rows", ROWS, "--seed", 4, *extra)
        assert result.returncode == 0, result.stderr
    version = pushed_versions(taxi_run.config)[-1]
    dtypes = {i["name"]: i["dtype"] for i in json.loads(
        (serving / "taxi" / version / "assets.extra" / "raw_features.json").read_text())}
    server = Server(["--model_name=taxi", f"--model_base_path={serving / 'taxi'}", f"--request_log_dir={log_dir}",
                     "--request_log_sample_rate=1.0"], root)
    try:
        server.wait_ready("/v1/models/taxi")
        same = _serve_span(server, root / "same.csv", "same", dtypes)
        relabelled = _serve_span(server, root / "relabelled.csv", "relabelled", dtypes)
    finally:
        server.stop()
    from monitoring import requests as request_log

    wait_until(lambda: request_log.read(str(log_dir), "taxi", {}).num_rows == 2 * ROWS, timeout=60)
    from config import load_config

    config = load_config(str(config_path))
    return root, config_path, config, int(version), same, relabelled


def test_a_changed_labelling_rule_is_concept_drift_and_unchanged_data_neither(setup):
    root, config_path, config, version, same, relabelled = setup
    ingested = _tfxline("feedback", "ingest", _feedback(root / "same_labels.csv", config, same), "--config",
                        config_path)
    assert ingested.returncode == 0 and f"{ROWS:,} joined (by version {version}: {ROWS:,})" in ingested.stdout, \
        ingested.stdout + ingested.stderr
    unchanged = _tfxline("monitor", "--config", config_path, "--json", root / "unchanged.json")
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert "verdict: no drift" in unchanged.stdout and "concept: no concept drift" in unchanged.stdout
    report = json.loads((root / "unchanged.json").read_text())
    live = report["quality"][0]
    assert live["version"] == version and live["concept_drift"] is False
    training_auc = live["training"]["auc"]
    window = live["windows"][0]
    assert window["labels"] == ROWS
    auc = window["metrics"]["auc"]
    # Unchanged data: the live AUC's interval reaches the Evaluator's AUC within the tolerance.
    assert auc["high"] >= training_auc - 0.05 and auc["low"] < auc["value"] < auc["high"]
    assert 3500 < window["label_lag_seconds"]["median"] < 3600 + 2 * ROWS + 600

    ingested = _tfxline("feedback", "ingest", _feedback(root / "relabelled_labels.csv", config, relabelled),
                        "--config", config_path)
    assert ingested.returncode == 0 and f"{ROWS:,} joined" in ingested.stdout, ingested.stderr
    drifted = _tfxline("monitor", "--config", config_path, "--json", root / "drifted.json", "--textfile",
                       root / "drifted.prom")
    assert drifted.returncode == 3, drifted.stdout + drifted.stderr
    assert "verdict: no drift" in drifted.stdout  # the inputs did not move
    assert f"concept: CONCEPT DRIFT in version {version} (auc; inputs did not move)" in drifted.stdout
    report = json.loads((root / "drifted.json").read_text())
    assert report["drift"] is False and report["concept_drift"] is True
    live = report["quality"][0]
    windows = {w["name"]: w for w in live["windows"]}
    assert windows["newest"]["labels"] == ROWS and windows["previous"]["labels"] == ROWS
    assert windows["newest"]["metrics"]["auc"]["high"] < training_auc - 0.05
    assert windows["previous"]["metrics"]["auc"]["high"] >= training_auc - 0.05
    assert live["training"]["auc"] == training_auc and "its evaluation" in live["training_source"]
    gauges = (root / "drifted.prom").read_text()
    assert f'tfxline_concept_drift{{model="taxi",version="{version}",metric="auc"}} 1' in gauges
    newest_auc = windows["newest"]["metrics"]["auc"]["value"]
    assert (f'tfxline_live_metric{{model="taxi",version="{version}",window="newest",metric="auc",bound="value"}} '
            f'{newest_auc!r}') in gauges

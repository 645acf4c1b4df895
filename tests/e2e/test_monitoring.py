"""`tfxline monitor` on what a real server logged, with the training statistics found through ML Metadata
(pushed version -> Pusher -> Model -> Trainer -> Examples -> DataProfile); and a real Prometheus that scrapes
`tfxline serve` and `tfxline monitor --serve` and fires the shipped drift alert."""
import base64
import csv
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import write_config
from tests.helpers import TFXLINE, pushed_versions
from tests.serving.conftest import Server, free_port, wait_until

pytestmark = pytest.mark.e2e
SERVED_ROWS = 800
RULES = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus" / "alerts.yml"


def _examples(taxi_rows, version_dir: Path):
    """Random taxi rows as serialized tf.Examples (a missing value is an absent feature), typed as the model's
    signature types them, half of them with 40x the trip_miles."""
    import tensorflow as tf

    header, rows = taxi_rows
    dtypes = {i["name"]: i["dtype"]
              for i in json.loads((version_dir / "assets.extra" / "raw_features.json").read_text())}
    examples = []
    for index, row in enumerate(random.Random(9).sample(rows, SERVED_ROWS)):
        example = tf.train.Example()
        for name, cell in zip(header, row):
            if name not in dtypes or cell == "":
                continue
            feature = example.features.feature[name]
            if dtypes[name] == "string":
                feature.bytes_list.value.append(cell.encode())
            elif dtypes[name] == "int64":
                feature.int64_list.value.append(int(float(cell)))
            else:
                feature.float_list.value.append(float(cell) * (40 if name == "trip_miles" and index % 2 else 1))
        examples.append(base64.b64encode(example.SerializeToString()).decode())
    return examples


@pytest.fixture(scope="module")
def served(taxi_run, taxi_rows, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    log_dir = root / "request_log"
    config = taxi_run.config
    config_path = write_config(root, data={"path": config.data.path}, output={"root": config.output.root},
                               monitoring={"request_log_dir": str(log_dir), "window_rows": 300})
    serving = Path(config.output.serving)
    server = Server(["--model_name=taxi", f"--model_base_path={serving / 'taxi'}",
                     f"--monitoring_config_file={serving / 'monitoring.config'}", f"--request_log_dir={log_dir}",
                     "--request_log_sample_rate=1.0"], root)
    try:
        server.wait_ready("/v1/models/taxi")
        examples = _examples(taxi_rows, serving / "taxi" / pushed_versions(config)[-1])
        for start in range(0, len(examples), 50):
            response = requests.post(f"{server.url}/v1/models/taxi:predict", timeout=30, json={
                "signature_name": "serving_default", "instances": [{"b64": e} for e in examples[start:start + 50]]})
            assert response.status_code == 200, response.text
        wait_until(lambda: sum(1 for _ in _records(log_dir)) == SERVED_ROWS, timeout=60)
        yield root, config_path, server, log_dir, int(pushed_versions(config)[-1])
    finally:
        server.stop()


def _records(log_dir):
    from monitoring import requests as request_log

    try:
        return range(request_log.read(str(log_dir), "taxi", {"trip_miles": "numeric"}).num_rows)
    except request_log.RequestLogError:
        return range(0)


def test_monitor_finds_the_training_statistics_in_mlmd_and_flags_trip_miles(served, tmp_path):
    root, config_path, _, _, version = served
    result = subprocess.run([TFXLINE, "monitor", "--config", str(config_path), "--json", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"version {version}: {SERVED_ROWS} requests; training data: span 0, " in result.stdout
    assert "/DataProfiler/profile/" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    skew = next(c for c in report["versions"][0]["comparisons"] if c["name"] == "skew")
    assert [f["feature"] for f in skew["features"] if f["drift"]] == ["trip_miles"]
    assert skew["reference_rows"] > 2000 and skew["window_rows"] == SERVED_ROWS
    previous = next(c for c in report["versions"][0]["comparisons"] if c["name"] == "drift vs previous window")
    assert not previous["drift"]  # both windows have the same half-shifted mix


def test_a_version_that_mlmd_does_not_know_is_an_error(served, tmp_path):
    root, config_path, _, _, _ = served
    path = tmp_path / "requests.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trip_miles", "model_version"])
        writer.writerows([[1.0 + i, 12345] for i in range(200)])
    result = subprocess.run([TFXLINE, "monitor", "--config", str(config_path), "--requests", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "model version 12345: its training statistics cannot be found (ML Metadata has no push of version " \
           "12345 by pipeline 'taxi')" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _prometheus_rules(directory: Path) -> Path:
    """The shipped rules with `for` cut to 0s (this test cannot wait 10 minutes; `promtool test rules` checks
    the real durations)."""
    text = re.sub(r"for: \d+m", "for: 0s", RULES.read_text())
    path = directory / "alerts.yml"
    path.write_text(text)
    return path


def test_prometheus_scrapes_serve_and_monitor_and_fires_the_drift_alert(served, tmp_path):
    if not shutil.which("prometheus"):
        pytest.fail("prometheus is missing: install the Debian package prometheus (make test does, as root)")
    root, config_path, server, _, version = served
    monitor_port, prometheus_port = free_port(), free_port()
    monitor = subprocess.Popen([TFXLINE, "monitor", "--config", str(config_path), "--serve", "--host", "127.0.0.1",
                                "--port", str(monitor_port), "--interval", "2"],
                               stdout=open(tmp_path / "monitor.log", "w"), stderr=subprocess.STDOUT)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_prometheus_rules(tmp_path))],
        "scrape_configs": [
            {"job_name": "tfxline-serve", "metrics_path": "/monitoring/prometheus/metrics",
             "static_configs": [{"targets": [f"127.0.0.1:{server.rest_port}"]}]},
            {"job_name": "tfxline-monitor", "static_configs": [{"targets": [f"127.0.0.1:{monitor_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    prometheus = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                                  stdout=open(tmp_path / "prometheus.log", "w"), stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{prometheus_port}/api/v1"
    try:
        def firing():
            try:
                alerts = requests.get(f"{api}/alerts", timeout=2).json()["data"]["alerts"]
            except requests.RequestException:
                return None
            return [a for a in alerts if a["labels"]["alertname"] == "TfxlineFeatureDrift" and a["state"] == "firing"]

        alerts = wait_until(firing, timeout=180, interval=1)
        assert alerts, (tmp_path / "monitor.log").read_text() + (tmp_path / "prometheus.log").read_text()[-2000:]
        assert {(a["labels"]["feature"], a["labels"]["version"]) for a in alerts} >= {("trip_miles", str(version))}
        assert {a["labels"]["feature"] for a in alerts} == {"trip_miles"}
        targets = requests.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
        assert {t["labels"]["job"]: t["health"] for t in targets} == {"tfxline-serve": "up", "tfxline-monitor": "up"}
        served_count = requests.get(f"{api}/query", params={"query": "sum(:tensorflow:serving:request_count)"},
                                    timeout=5).json()["data"]["result"]
        assert float(served_count[0]["value"][1]) >= SERVED_ROWS / 50
    finally:
        for process in (prometheus, monitor):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

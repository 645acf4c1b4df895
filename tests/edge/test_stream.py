"""`tfxline edge stream` against a real mosquitto broker: results for every good message, malformed
ones dead-lettered with the reason while the consumer carries on, windowed statistics in the
documented shape."""
import json
import os
import subprocess
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from serving.edge import runtime
from serving.window_stats import SCHEMA
from tests.helpers import TFXLINE, example_rows, split_examples
from tests.mosquitto import Mosquitto
from tests.serving.conftest import wait_until


@pytest.fixture
def broker(tmp_path):
    running = Mosquitto(tmp_path)
    yield running
    running.stop()


class Collector:
    """Subscribes to the stream's output topics and keeps what arrives."""

    def __init__(self, port: int, topics):
        self.messages = {topic: [] for topic in topics}
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(topic, 1) for topic in topics])
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages[m.topic].append(m.payload)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def publish(self, topic, payload) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


BAD = [
    (b"not json {", "not JSON"),
    (b"[1, 2]", "expected a JSON object of feature values"),
    (json.dumps({"part": "b3", "fare": "twelve"}).encode(), "feature 'fare': expected a number"),
    (json.dumps({"part": "b4", "tip": 3}).encode(), "unknown feature(s) ['tip']"),
    (b"\xff\xfe{", "not JSON"),
]


def test_stream_scores_dead_letters_and_window_statistics(tiny_model, broker, tmp_path):
    model = runtime.load_newest(tiny_model.edge_base)
    rows = example_rows(split_examples(tiny_model.examples_uri, "eval", limit=100), {i["name"] for i in model.inputs})
    topics = {name: f"plant/line1/{name}" for name in ("requests", "scores", "dead", "stats")}
    log_path = tmp_path / "stream.log"
    process = subprocess.Popen(
        [TFXLINE, "edge", "stream", "--edge-dir", os.path.dirname(tiny_model.edge_base), "--broker",
         f"127.0.0.1:{broker.port}", "--input-topic", topics["requests"], "--output-topic", topics["scores"],
         "--dead-letter-topic", topics["dead"], "--stats-topic", topics["stats"], "--window-seconds", "1",
         "--id-field", "part"], stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    collector = Collector(broker.port, [topics["scores"], topics["dead"], topics["stats"]])
    try:
        wait_until(lambda: "subscribed to" in log_path.read_text() or process.poll() is not None, timeout=60)
        assert process.poll() is None, log_path.read_text()
        half = len(rows) // 2
        for index, row in enumerate(rows[:half]):
            collector.publish(topics["requests"], json.dumps({"part": f"g{index}", **row}))
        for payload, _ in BAD:
            collector.publish(topics["requests"], payload)
        for index, row in enumerate(rows[half:], start=half):
            collector.publish(topics["requests"], json.dumps({"part": f"g{index}", **row}))
        wait_until(lambda: len(collector.messages[topics["scores"]]) >= len(rows)
                   and len(collector.messages[topics["dead"]]) >= len(BAD), timeout=60)
        time.sleep(1.5)  # one more window, so the last statistics are published
    finally:
        process.terminate()
        process.wait(timeout=30)
        collector.close()
    assert process.returncode == 0, log_path.read_text()
    assert f"{len(rows):,} scored, {len(BAD)} dead-lettered" in log_path.read_text()

    results = {message["id"]: message for message in map(json.loads, collector.messages[topics["scores"]])}
    assert sorted(results) == sorted(f"g{index}" for index in range(len(rows)))
    expected = model.predict(rows)
    for index in range(len(rows)):
        result = results[f"g{index}"]
        assert result["model_version"] == int(tiny_model.version)
        np.testing.assert_allclose(result["scores"], expected[index], atol=1e-6)

    letters = [json.loads(message) for message in collector.messages[topics["dead"]]]
    assert len(letters) == len(BAD)
    for letter, (payload, reason) in zip(letters, BAD):
        assert reason in letter["reason"] and letter["topic"] == topics["requests"]
        assert letter.get("payload", "").encode() == payload or letter.get("payload_base64")

    windows = [json.loads(message) for message in collector.messages[topics["stats"]]]
    assert windows and all(window["schema"] == SCHEMA for window in windows)
    assert sum(w["count"] for w in windows) == len(rows) and sum(w["rejected"] for w in windows) == len(BAD)
    fares = [float(row["fare"]) for row in rows]
    biggest = max(windows, key=lambda window: window["count"])
    assert set(biggest["features"]) == {item["name"] for item in model.inputs}
    assert min(fares) <= biggest["features"]["fare"]["mean"] <= max(fares)
    shares = biggest["features"]["payment_type"]["shares"]
    assert abs(sum(shares.values()) - 1) < 1e-4 and set(shares) <= {row.get("payment_type") for row in rows}
    assert 0 <= biggest["outputs"]["scores"]["mean"][0] <= 1


def test_a_broker_address_that_is_not_host_port_fails_in_one_line(tiny_model):
    result = subprocess.run([TFXLINE, "edge", "stream", "--edge-dir", os.path.dirname(tiny_model.edge_base),
                             "--broker", "localhost"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "tfxline edge: --broker 'localhost' is not HOST:PORT; e.g. --broker localhost:1883"


def test_a_newly_published_version_takes_over(tiny_model, broker, tmp_path):
    import shutil

    base = tmp_path / "edge" / "taxi"
    version = int(tiny_model.version)
    shutil.copytree(os.path.join(tiny_model.edge_base, tiny_model.version), base / str(version))
    log_path = tmp_path / "stream.log"
    process = subprocess.Popen([TFXLINE, "edge", "stream", "--edge-dir", str(tmp_path / "edge"), "--broker",
                                f"127.0.0.1:{broker.port}", "--file_system_poll_wait_seconds", "0.2"],
                               stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    collector = Collector(broker.port, ["tfxline/taxi/scores"])
    versions = []
    try:
        wait_until(lambda: "subscribed to" in log_path.read_text() or process.poll() is not None, timeout=60)

        def ask():
            collector.publish("tfxline/taxi/requests", json.dumps({"id": len(versions), "fare": 9.5}))
            wait_until(lambda: len(collector.messages["tfxline/taxi/scores"]) > len(versions), timeout=30)
            versions.append(json.loads(collector.messages["tfxline/taxi/scores"][-1])["model_version"])
            return versions[-1]

        assert ask() == version
        staging = tmp_path / "edge" / "taxi" / ".incoming"
        shutil.copytree(base / str(version), staging)
        manifest = json.loads((staging / "manifest.json").read_text())
        (staging / "manifest.json").write_text(json.dumps({**manifest, "version": version + 1}))
        staging.rename(base / str(version + 1))  # published as the pipeline does: renamed into place
        wait_until(lambda: ask() == version + 1, timeout=30, interval=0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        collector.close()
    assert versions[0] == version and versions[-1] == version + 1

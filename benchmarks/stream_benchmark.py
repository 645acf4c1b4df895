"""Stream scoring at the edge: `tfxline edge stream` through a real MQTT broker, in one run with the
broker's own round trip (a relay that republishes each message unscored) as the anchor.

A local mosquitto (Debian's, on a loopback port); the newest version in the config's edge directory
(after `tfxline run`); messages are eval-split rows as JSON, QoS 1, each carrying its publish time.
  1. throughput: 20,000 messages published as fast as the publisher can, messages/s from the first
     publish to the last result;
  2. latency: 200 messages/s for 15 s, publish-to-result time p50/p99 (publisher and subscriber in
     this process, one clock).
Prints a table and writes the `stream` section of BENCHMARKS.md.

Usage (from the repository root, after `tfxline run`):
  .venv/bin/python benchmarks/stream_benchmark.py [--config F]
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from benchmarks.report import write_section  # noqa: E402
from config import DEFAULT_CONFIG, load_config  # noqa: E402
from tests.mosquitto import Mosquitto  # noqa: E402

TFXLINE = str(Path(sys.executable).with_name("tfxline"))
IN, OUT = "bench/requests", "bench/scores"


def _client(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class Relay:
    """The anchor: subscribes to the input topic and republishes every message to the output."""

    def __init__(self, port: int):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(IN, qos=1)
        self.client.on_message = lambda c, u, m: c.publish(OUT, m.payload, qos=1)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


class Results:
    def __init__(self, port: int):
        self.arrivals, self.sent = {}, {}
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(OUT, qos=1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._arrived
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._subscribed.wait(10)

    def _arrived(self, client, userdata, message):
        now = time.time()
        self.arrivals[json.loads(message.payload)["id"]] = now

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count and time.monotonic() < deadline:
            time.sleep(0.02)


def _messages(rows, count: int):
    return [{**rows[i % len(rows)]} for i in range(count)]


def run_case(port: int, rows, count: int, rate: float = None) -> dict:
    results = Results(port)
    publisher = _client(port)
    time.sleep(0.5)
    started = time.time()
    for index, row in enumerate(_messages(rows, count)):
        if rate:
            pause = started + index / rate - time.time()
            if pause > 0:
                time.sleep(pause)
        sent = time.time()
        results.sent[index] = sent
        publisher.publish(IN, json.dumps({"id": index, **row}), qos=1)
    results.wait(count, timeout=120)
    finished = max(results.arrivals.values()) if results.arrivals else time.time()
    latencies = np.array([results.arrivals[i] - results.sent[i] for i in results.arrivals]) * 1000
    for client in (publisher, results.client):
        client.loop_stop()
        client.disconnect()
    return {"received": len(results.arrivals), "count": count, "seconds": finished - started,
            "p50": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
            "p99": float(np.percentile(latencies, 99)) if len(latencies) else float("nan")}


def _eval_rows(config, names) -> list:
    with open(next(Path(config.data.path).glob("*.csv")), newline="") as handle:
        rows = list(csv.DictReader(handle))[:2000]
    return [{k: v for k, v in row.items() if k in names and v != ""} for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    config = load_config(args.config)
    from serving.edge import runtime

    edge_dir = os.path.abspath(config.output.edge)
    model = runtime.load_newest(os.path.join(edge_dir, config.name))
    if model is None:
        print(f"no edge model under {edge_dir}; run `tfxline run` first", file=sys.stderr)
        return 1
    rows = _eval_rows(config, {item["name"] for item in model.inputs})
    load_before = os.getloadavg()
    table = {}
    with tempfile.TemporaryDirectory(prefix="tfxline-stream-") as temporary:
        broker = Mosquitto(Path(temporary))
        try:
            relay = Relay(broker.port)
            time.sleep(0.5)
            table["broker relay (no model)"] = (run_case(broker.port, rows, args.messages),
                                                run_case(broker.port, rows, int(args.rate * args.seconds), args.rate))
            relay.stop()
            log = open(Path(temporary) / "stream.log", "w")
            stream = subprocess.Popen([TFXLINE, "edge", "stream", "--edge-dir", edge_dir, "--model-name", config.name,
                                       "--broker", f"127.0.0.1:{broker.port}", "--input-topic", IN,
                                       "--output-topic", OUT, "--id-field", "id"], stdout=log, stderr=log)
            deadline = time.monotonic() + 60
            while "subscribed to" not in (Path(temporary) / "stream.log").read_text():
                if time.monotonic() > deadline or stream.poll() is not None:
                    raise RuntimeError((Path(temporary) / "stream.log").read_text())
                time.sleep(0.1)
            table["tfxline edge stream (LiteRT)"] = (
                run_case(broker.port, rows, args.messages),
                run_case(broker.port, rows, int(args.rate * args.seconds), args.rate))
            stream.terminate()
            stream.wait(timeout=30)
        finally:
            broker.stop()
    load_after = os.getloadavg()
    lines = [f"Machine: {os.cpu_count()} cores, shared with other work (load average {load_before[0]:.1f} before, "
             f"{load_after[0]:.1f} after: numbers are noisy); mosquitto on loopback, QoS 1; model `{config.name}` "
             f"version {model.version} (float TFLite). Publisher and subscriber share this process and its clock.",
             "", f"| path | throughput ({args.messages:,} messages, as fast as published) | received | "
                 f"latency p50 at {args.rate:,.0f}/s | p99 |", "|---|---:|---:|---:|---:|"]
    for name, (burst, paced) in table.items():
        lines.append(f"| {name} | {burst['received'] / burst['seconds']:,.0f} messages/s | "
                     f"{burst['received']:,}/{burst['count']:,} | {paced['p50']:.1f} ms | {paced['p99']:.1f} ms |")
    body = "\n".join(lines)
    print(body)
    write_section(ROOT / "BENCHMARKS.md", "stream", "Stream scoring at the edge: MQTT through mosquitto", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

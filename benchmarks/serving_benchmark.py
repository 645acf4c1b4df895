"""Serving: tfxline's model server against a naive per-request FastAPI endpoint, in one run, on
three models: tfxline's taxi export (the newest pushed version, copied to a scratch directory
first, so a push during the run cannot swap the model under a measurement), TF Serving's
half_plus_two (a TF1 graph with variables, built as TF Serving's
servables/tensorflow/testdata/saved_model_half_plus_two.py builds it) and a TF2 tf.Module with
several inputs and outputs (both built by the test suite's builders, tests/serving/models.py).
For each model:
  1. the in-process limit: the signature called directly, single calls/s and examples/s in
     batches of 32, through tf.saved_model.load (what the naive endpoint calls) and through the
     session callable tfxline serve runs (a child process, pinned like the servers);
  2. the naive endpoint (`benchmarks/naive_fastapi_server.py`: FastAPI on uvicorn, one worker,
     one signature call per request), REST;
  3. `tfxline serve` with batching off, then on (`benchmarks/serving/batching_parameters.pbtxt`),
     then on with --workers (every core), REST and gRPC.
Then the gRPC layer alone: grpc.aio with a handler that does nothing
(`benchmarks/serving/empty_grpc_server.py`), for where the time of a gRPC request goes.
A point during which other processes used the CPUs (this machine is shared) is measured again.
Each server is checked for correct answers first (every request row over REST and the Python gRPC
client, against the in-process answers; the raw gRPC body that h2load sends, through `nghttp`,
for grpc-status 0). Then single-example predict at each concurrency: warm-up, then a timed run.
The load generators are not Python: `wrk` (REST, lua script `benchmarks/serving/predict.lua`)
and `h2load` (gRPC as HTTP/2 POSTs of a framed PredictRequest). With two or more cores the
server gets one core and the load generator another (`taskset`).
Prints a table and writes the `serving` section of BENCHMARKS.md.

Usage: .venv/bin/python benchmarks/serving_benchmark.py [--duration 10] [--warmup 3]
           [--concurrency 1,8,32] [--models taxi,half_plus_two,tf2_module] [--model_base_path DIR]
           [--no-pin] [--skip-tfxline]
Needs: apt-get install -y wrk nghttp2-client
"""
import argparse
import atexit
import dataclasses
import csv
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "benchmarks" / "serving"
LUA = HELPERS / "predict.lua"
BATCHING = HELPERS / "batching_parameters.pbtxt"
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # this process imports TF for the gRPC protos

TAXI_CSV = "package:tfx/examples/chicago_taxi_pipeline/data/simple/data.csv"
GRPC_PATH = "/tensorflow.serving.PredictionService/Predict"
GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]
APT = "apt-get install -y wrk nghttp2-client"
# Targets (issue 13): REST at c=32 at least 10x the naive endpoint with p99 under 10 ms; gRPC 4x.
TARGET_SPEEDUP, TARGET_P99_MS, TARGET_GRPC_SPEEDUP = 10.0, 10.0, 4.0
EMPTY_GRPC = HELPERS / "empty_grpc_server.py"
METRICS_PATH = "/monitoring/prometheus/metrics"
SCORE_TOLERANCE = 1e-4
BUSY_CORES = 0.3  # other processes' CPU above which a measurement is repeated


# ---------------------------------------------------------------- child processes

class Children:
    """Every process this script starts, each in its own session; all are ended on exit."""

    def __init__(self):
        self.processes = []
        atexit.register(self.stop_all)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.stop_all()
        sys.exit(128 + signum)

    def start(self, command, log_path: Path, env=None) -> subprocess.Popen:
        log = open(log_path, "w")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                   start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 15) -> None:
        if process.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
                try:
                    os.killpg(process.pid, sig)  # the child's own process group (start_new_session)
                except ProcessLookupError:
                    break
                try:
                    process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in list(self.processes):
            self.stop(process, timeout=5)


def require_tools() -> dict:
    missing = [tool for tool in ("wrk", "h2load", "nghttp", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"serving_benchmark: {', '.join(missing)} not found on PATH; install the load generators "
                 f"with `{APT}` (taskset is in util-linux)")
    versions = {}
    for tool, flag in (("wrk", "-v"), ("h2load", "--version")):
        out = subprocess.run([tool, flag], capture_output=True, text=True)
        versions[tool] = " ".join((out.stdout + out.stderr).split()[:2])
    return versions


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
            try:
                sock.bind(("127.0.0.1", port))
                return sock.getsockname()[1]
            except OSError:
                continue
    raise RuntimeError("no free port")


def listening_ports(pid: int) -> set:
    import psutil

    ports = set()
    try:
        parent = psutil.Process(pid)
        for process in [parent] + parent.children(recursive=True):
            connections = getattr(process, "net_connections", process.connections)()
            ports |= {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    except psutil.Error:
        pass
    return ports


def wait_ready(process, rest_port: int, model_name: str, log_path: Path, timeout: float, ports=()) -> float:
    """Polls GET /v1/models/<name> until a version is AVAILABLE; returns seconds since start."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{rest_port}/v1/models/{model_name}"
    last = "no answer"
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready; "
                               f"last lines of {log_path}:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status = json.loads(response.read())
            states = [v.get("state") for v in status.get("model_version_status", [])]
            if "AVAILABLE" in states:
                missing = set(ports or [rest_port]) - listening_ports(process.pid)
                if missing:  # someone else's server answered on our port
                    raise RuntimeError(f"port(s) {sorted(missing)} answer but are not the started server's")
                return time.monotonic() - started
            last = f"states {states}"
        except (urllib.error.URLError, ConnectionError, OSError, ValueError) as error:
            last = str(error)
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout:.0f} s ({last}); last lines of {log_path}:\n{tail(log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def log_problems(path: Path) -> list:
    """Distinct errors in a server log, most frequent first, as 'N x message'."""
    from collections import Counter

    found = Counter()
    for line in path.read_text(errors="replace").splitlines():
        line = re.sub(r"^\S+ \S+ tfxline serve: ", "", line.strip())
        if re.match(r"^([\w.]+(Error|Exception|Exit)|Unexpected \[)", line) or re.search(r"\b(ERROR|CRITICAL)\b", line):
            found[re.sub(r"\d+", "N", re.sub(r" object at 0x[0-9a-f]+", "", line))[:200]] += 1
    return [f"{count} x `{message}`" for message, count in found.most_common(3)]


def pinned(command, cpu):
    return command if cpu is None else ["taskset", "-c", str(cpu)] + list(command)


class CpuWatch:
    """CPU time, in cores, over a measurement: the server's process tree, this script and the load
    generator it waited for, and everything else on the machine (other users' work)."""

    def __init__(self, server_pid=None):
        self.server_pid = server_pid

    def _server(self) -> float:
        import psutil

        try:
            parent = psutil.Process(self.server_pid)
            return sum(sum(p.cpu_times()[:2]) for p in [parent] + parent.children(recursive=True))
        except psutil.Error:
            return 0.0

    @staticmethod
    def _ours() -> float:
        return sum(sum(resource.getrusage(who)[:2]) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    @staticmethod
    def _busy() -> float:
        import psutil

        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "guest", 0.0) \
            - getattr(times, "guest_nice", 0.0)

    def __enter__(self):
        self.started, self.busy, self.server, self.ours = time.monotonic(), self._busy(), self._server(), self._ours()
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.started
        self.server_cores = (self._server() - self.server) / wall if self.server_pid else 0.0
        self.load_cores = (self._ours() - self.ours) / wall
        self.other_cores = max(0.0, (self._busy() - self.busy) / wall - self.server_cores - self.load_cores)
        return False


def wait_for_quiet(limit_s: float, threshold: float = BUSY_CORES) -> float:
    """Waits (up to limit_s) until the machine's busy CPU over 3 s is below `threshold` cores;
    returns the last reading."""
    deadline = time.monotonic() + limit_s
    while True:
        with CpuWatch() as watch:
            time.sleep(3)
        if watch.other_cores < threshold or time.monotonic() > deadline:
            return watch.other_cores
        print(f"  machine busy ({watch.other_cores:.2f} cores used by other processes); waiting ...", flush=True)
        time.sleep(7)


# ---------------------------------------------------------------- models and request data

@dataclasses.dataclass
class Workload:
    """One model as the benchmark serves it: every request is one instance of `instances`."""
    key: str           # the served model name, and the --models key
    title: str
    signature: str
    model_dir: Path    # <base>/<key>/<version>
    instances: list    # JSON instances, one per request
    output: str        # the output alias whose first value the answers are checked on

    @property
    def base(self) -> Path:
        return self.model_dir.parent


def newest_version(base: Path) -> Path:
    versions = sorted((p for p in base.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise RuntimeError(f"no integer version directory under {base}; run `.venv/bin/tfxline run` first")
    return versions[-1]


def request_rows(features: list, count: int) -> list:
    """`count` rows spread evenly over the taxi CSV, only the model's raw features, typed; an empty
    cell takes the default from raw_features.json."""
    from config import resolve_path

    with open(resolve_path(TAXI_CSV), newline="") as handle:
        table = list(csv.DictReader(handle))
    step = max(1, len(table) // count)
    rows = []
    for source in table[::step][:count]:
        row = {}
        for feature in features:
            cell = source.get(feature["name"], "")
            value = feature.get("default") if cell in ("", None) else cell
            if feature["dtype"].startswith("int"):
                value = int(float(value or 0))
            elif feature["dtype"].startswith("float"):
                value = float(value or 0.0)
            else:
                value = "" if value is None else str(value)
            row[feature["name"]] = value
        rows.append(row)
    return rows


def workloads(keys: list, model_base_path: Path, work: Path, rows: int) -> list:
    """The models to benchmark, in a scratch directory: a copy of the newest taxi version, and
    half_plus_two and the TF2 module built by the test suite's builders."""
    import numpy as np

    from tests.serving import models

    chosen = []
    for key in keys:
        base = work / "models" / key
        if key == "taxi":
            source = newest_version(model_base_path.resolve())
            shutil.copytree(source, base / source.name)
            features = json.loads((source / "assets.extra" / "raw_features.json").read_text())
            chosen.append(Workload(key, f"taxi (tfxline's export, version {source.name})", "serving_raw",
                                   base / source.name, request_rows(features, rows), "scores"))
        elif key == "half_plus_two":
            chosen.append(Workload(key, "half_plus_two (TF Serving's TF1 test model)", "serving_default",
                                   models.build_half_plus_two(base / "1"),
                                   [[round(float(x), 3)] for x in np.linspace(-5, 5, rows)], "y"))
        elif key == "tf2_module":
            colors = ["red", "green", "blue", "purple"]
            chosen.append(Workload(key, "tf2_module (a TF2 tf.Module: 3 inputs, 5 outputs)", "serving_default",
                                   models.build_tf2_module(base / "1"),
                                   [{"features": [round(i / 7, 3), round(1 - i / 5, 3)], "color": colors[i % 4],
                                     "count": i} for i in range(rows)], "logits"))
        else:
            raise SystemExit(f"serving_benchmark: unknown model '{key}'; choose from taxi, half_plus_two, tf2_module")
    return chosen


def rest_body(workload: Workload, instance) -> str:
    return json.dumps({"signature_name": workload.signature, "instances": [instance]}, separators=(",", ":"))


def input_dtypes(workload: Workload) -> dict:
    """The signature's inputs as numpy dtypes (object for strings), from saved_model.pb."""
    from serving.saved_model import read_signature_defs
    from serving.servable import NUMPY_DTYPES
    from tensorflow.core.framework import types_pb2

    signature = read_signature_defs(str(workload.model_dir))[workload.signature]
    return {alias: NUMPY_DTYPES[types_pb2.DataType.Name(info.dtype)] for alias, info in signature.inputs.items()}


def columns(instances: list, dtypes: dict) -> dict:
    """A batch of JSON instances as one array per input."""
    import numpy as np

    def array(values, dtype):
        if dtype is object:
            return np.array([v.encode() for v in values], dtype=object)
        return np.array(values, dtype=dtype)

    if not isinstance(instances[0], dict):
        (alias, dtype), = dtypes.items()
        return {alias: array(instances, dtype)}
    return {alias: array([instance[alias] for instance in instances], dtype) for alias, dtype in dtypes.items()}


def grpc_request(workload: Workload, instance, dtypes: dict):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = workload.key
    request.model_spec.signature_name = workload.signature
    for alias, value in columns([instance], dtypes).items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def grpc_frame(message: bytes) -> bytes:
    """gRPC length-prefixed message: compression flag 0, 4-byte big-endian length, the message."""
    return struct.pack(">BI", 0, len(message)) + message


def first_value(prediction, output: str) -> float:
    """The first value of a REST prediction row (a list, or an object of outputs)."""
    value = prediction[output] if isinstance(prediction, dict) else prediction
    while isinstance(value, list):
        value = value[0]
    return float(value)


# ---------------------------------------------------------------- in-process limit (child process)

def inprocess(spec_path: str, duration: float, warmup: float) -> dict:
    """The signature called directly: through tf.saved_model.load (public, as the naive endpoint
    does) and through tfxline's session callable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from serving.saved_model import load_saved_model

    spec = json.loads(Path(spec_path).read_text())
    workload = Workload(spec["key"], "", spec["signature"], Path(spec["model_dir"]), spec["instances"], spec["output"])
    dtypes = input_dtypes(workload)
    instances = workload.instances
    signature = tf.saved_model.load(str(workload.model_dir)).signatures[workload.signature]
    servable = load_saved_model(workload.key, 1, str(workload.model_dir))

    def eager(batch):
        return {alias: tf.constant(value) for alias, value in columns(batch, dtypes).items()}

    reference = signature(**eager(instances))[workload.output].numpy()
    reference = reference.reshape(len(instances), -1)[:, 0].tolist()
    batches = [[instances[(start + j) % len(instances)] for j in range(32)] for start in range(0, len(instances), 32)]

    def run(call, inputs, seconds):
        latencies, index = [], 0
        end = time.perf_counter() + seconds
        while True:
            began = time.perf_counter()
            if began >= end:
                break
            call(inputs[index % len(inputs)])
            latencies.append(time.perf_counter() - began)
            index += 1
        return latencies

    measured = {"reference": reference}
    for name, call, prepare in (
            ("eager", lambda inputs: signature(**inputs), eager),
            ("session", lambda inputs: servable.run(workload.signature, inputs), lambda b: columns(b, dtypes))):
        singles = [prepare([instance]) for instance in instances]
        batched = [prepare(batch) for batch in batches]
        run(call, singles, warmup)
        single = run(call, singles, duration / 2)
        run(call, batched, warmup / 2)
        batch = run(call, batched, duration / 2)
        measured[name] = {"single_per_s": len(single) / sum(single), "single_p50_ms": percentile(single, 50) * 1e3,
                          "single_p99_ms": percentile(single, 99) * 1e3,
                          "batch32_examples_per_s": 32 * len(batch) / sum(batch),
                          "batch32_p50_ms": percentile(batch, 50) * 1e3}
    return measured


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


# ---------------------------------------------------------------- correctness checks

def check_rest(rest_port: int, workload: Workload, reference: list) -> dict:
    url = f"http://127.0.0.1:{rest_port}/v1/models/{workload.key}:predict"
    worst, wrong, errors = 0.0, 0, []
    for instance, expected in zip(workload.instances, reference):
        request = urllib.request.Request(url, data=rest_body(workload, instance).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                got = first_value(json.loads(response.read())["predictions"][0], workload.output)
            diff = abs(got - expected)
            worst = max(worst, diff)
            wrong += diff > SCORE_TOLERANCE
        except Exception as error:  # noqa: BLE001 - recorded, reported
            body = error.read()[:200] if isinstance(error, urllib.error.HTTPError) else b""
            errors.append(f"{error} {body!r}")
    return {"rows": len(reference), "wrong": wrong, "errors": errors, "max_diff": worst}


def check_grpc(grpc_port: int, workload: Workload, requests: list, reference: list) -> dict:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    worst, wrong, errors = 0.0, 0, []
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for request, expected in zip(requests, reference):
            try:
                response = stub.Predict(request, timeout=10)
                got = response.outputs[workload.output].float_val[0]
                diff = abs(got - expected)
                worst = max(worst, diff)
                wrong += diff > SCORE_TOLERANCE
            except grpc.RpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
    return {"rows": len(requests), "wrong": wrong, "errors": errors, "max_diff": worst}


def check_grpc_body(grpc_port: int, body_path: Path, output: str, expected: float) -> int:
    """Sends h2load's exact body with nghttp; returns the byte size of a good response's DATA.
    Raises when grpc-status is not 0 or the answer is wrong."""
    from tensorflow_serving.apis import predict_pb2

    url = f"http://127.0.0.1:{grpc_port}{GRPC_PATH}"
    command = ["nghttp", "-d", str(body_path)] + [arg for h in GRPC_HEADERS for arg in ("-H", h)] + [url]
    verbose = subprocess.run(command[:1] + ["-v"] + command[1:], capture_output=True, timeout=30)
    text = verbose.stdout.decode(errors="replace")
    status = re.findall(r"grpc-status: (\d+)", text)
    if status != ["0"]:
        message = re.findall(r"grpc-message: (.*)", text)
        raise RuntimeError(f"h2load's gRPC body got grpc-status {status or 'none'} {message}:\n{text[-1500:]}")
    data = subprocess.run(command, capture_output=True, timeout=30).stdout
    flag, length = struct.unpack(">BI", data[:5])
    if flag != 0 or length != len(data) - 5:
        raise RuntimeError(f"unexpected gRPC response framing: flag {flag}, length {length}, {len(data)} bytes")
    got = predict_pb2.PredictResponse.FromString(data[5:]).outputs[output].float_val[0]
    if abs(got - expected) > SCORE_TOLERANCE:
        raise RuntimeError(f"h2load's gRPC body got {got}, in-process {expected}")
    return len(data)


# ---------------------------------------------------------------- load generators

def run_wrk(rest_port, model_name, bodies_path, concurrency, seconds, cpu) -> dict:
    url = f"http://127.0.0.1:{rest_port}/v1/models/{model_name}:predict"
    command = pinned(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency",
                      "-s", str(LUA), url, "--", str(bodies_path)], cpu)
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^RESULT (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    fields = {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
    first_bad = re.search(r"^FIRST_BAD (.*)$", out.stdout, re.M)
    errors = (fields["bad"] + fields["connect_errors"] + fields["read_errors"] + fields["write_errors"]
              + fields["timeouts"])
    return {"rps": fields["ok"] / (fields["duration_us"] / 1e6), "p50_ms": fields["p50_us"] / 1e3,
            "p99_ms": fields["p99_us"] / 1e3, "max_ms": fields["max_us"] / 1e3, "ok": int(fields["ok"]),
            "errors": int(errors), "first_error": (first_bad.group(1).strip() if first_bad else "")}


def run_h2load(grpc_port, body_path, concurrency, seconds, cpu, work: Path, response_bytes=None) -> dict:
    """One timed h2load run (no --warm-up-time: its traffic totals would include the warm-up).
    Without response_bytes it is a warm-up and nothing is parsed."""
    url = f"http://127.0.0.1:{grpc_port}{GRPC_PATH}"
    log = work / f"h2load-{grpc_port}-{concurrency}-{time.time_ns()}.tsv"
    command = ["h2load", "-t1", f"-c{concurrency}", "-m1", f"-D{seconds}", "-d", str(body_path)]
    for header in GRPC_HEADERS:
        command += ["-H", header]
    if response_bytes:
        command.append(f"--log-file={log}")
    out = subprocess.run(pinned(command + [url], cpu), capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout + out.stderr
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", text)
    data = re.search(r"traffic: .*?\((\d+)\) data", text)
    finished = re.search(r"finished in ([\d.]+)s", text)
    if out.returncode != 0 or not (requests and data and finished):
        raise RuntimeError(f"h2load failed ({out.returncode}):\n{text[-3000:]}")
    if not response_bytes:
        return {}
    done, succeeded, failed, errored, timeouts = (int(requests.group(i)) for i in (3, 4, 5, 6, 7))
    # h2load counts an HTTP 200 as a success whatever the grpc-status trailer says. A good response
    # has a fixed size (same request, same model), so good responses = DATA bytes / that size; a
    # gRPC error is a trailers-only response without DATA.
    data_bytes = int(data.group(1))
    grpc_ok = min(succeeded, data_bytes // response_bytes)
    latencies = []
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            latencies.append(int(parts[2]) / 1e6)
    log.unlink()
    first_error = ""
    if data_bytes != succeeded * response_bytes:
        first_error = (f"HTTP 200 x {succeeded} but {data_bytes} DATA bytes = {data_bytes / response_bytes:.1f} "
                       f"good responses of {response_bytes} bytes: the rest carried a gRPC error status")
    elif done != succeeded:
        first_error = f"{done - succeeded} requests without HTTP 200"
    return {"rps": grpc_ok / float(finished.group(1)), "p50_ms": percentile(latencies, 50) * 1e3,
            "p99_ms": percentile(latencies, 99) * 1e3, "max_ms": max(latencies, default=float("nan")) * 1e3,
            "ok": grpc_ok, "errors": (done - grpc_ok) + errored + timeouts, "first_error": first_error}


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_base_path", default=str(ROOT / "tfxline_output" / "serving" / "taxi"),
                        help="TF Serving base path of the taxi model; its newest version is benchmarked")
    parser.add_argument("--models", default="taxi,half_plus_two,tf2_module", help="which models, in this order")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each measurement")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rows", type=int, default=64, help="distinct request rows (REST rotates through them)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load generator to cores")
    parser.add_argument("--batching_parameters_file", default=str(BATCHING),
                        help="batching parameters for the batching-on server")
    parser.add_argument("--servers", default="naive,off,on,workers",
                        help="which servers: naive, off (tfxline, batching off), on (batching on), workers "
                             "(batching on with --workers, the server on every core)")
    parser.add_argument("--workers", type=int, default=max(2, len(os.sched_getaffinity(0))),
                        help="tfxline serve --workers for the `workers` server (1: skip it)")
    parser.add_argument("--skip-tfxline", action="store_true", help="measure only the naive endpoint and the model")
    parser.add_argument("--server-timeout", type=float, default=180, help="seconds to wait for a server to load")
    parser.add_argument("--quiet-wait", type=float, default=300,
                        help="seconds to wait at most for other processes to leave the CPUs idle")
    parser.add_argument("--retries", type=int, default=2,
                        help="times a point is measured again when other processes used the CPUs meanwhile")
    parser.add_argument("--no-report", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--_inprocess", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._inprocess:
        spec_path, duration, warmup = args._inprocess
        print(json.dumps(inprocess(spec_path, float(duration), float(warmup))))
        return 0

    tools = require_tools()
    revision = server_revision()
    servers = set(args.servers.split(","))
    if args.skip_tfxline:
        servers -= {"off", "on", "workers"}
    levels = [int(c) for c in args.concurrency.split(",")]
    python = sys.executable
    tfxline = str(Path(python).parent / "tfxline")
    if servers & {"off", "on", "workers"}:
        probe = subprocess.run([tfxline, "serve", "--help"], capture_output=True, text=True)
        if probe.returncode != 0:
            sys.exit(f"serving_benchmark: `{tfxline} serve --help` failed, so tfxline's server is not available "
                     f"(use --skip-tfxline to measure the rest):\n{(probe.stdout + probe.stderr)[-1500:]}")

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (None, None) if args.no_pin or len(cpus) < 2 else (cpus[-1], cpus[0])
    children = Children()
    work = Path(tempfile.mkdtemp(prefix="tfxline-serving-bench-"))
    atexit.register(shutil.rmtree, work, True)
    logs = Path(tempfile.mkdtemp(prefix="tfxline-serving-bench-logs-"))  # kept: the servers' own logs
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    chosen = workloads(args.models.split(","), Path(args.model_base_path), work, args.rows)
    monitoring = work / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n')
    results, limits, checks, notes = [], {}, {}, []
    print(f"models {', '.join(w.key for w in chosen)}; server CPU {server_cpu}, load generator CPU {load_cpu}",
          flush=True)
    quiet = wait_for_quiet(args.quiet_wait)
    if quiet >= BUSY_CORES:
        notes.append(f"the machine was not idle at the start ({quiet:.2f} cores busy with other processes)")

    def quietest(run, label):
        """Runs `run` (returning a dict) up to 1 + retries times; keeps the quietest attempt."""
        best = None
        for attempt in range(args.retries + 1):
            if attempt:
                print(f"  {label}: other processes used {best['other_cores']:.2f} cores meanwhile; measuring again",
                      flush=True)
                wait_for_quiet(args.quiet_wait / 3)
            result = run()
            if best is None or result["other_cores"] < best["other_cores"]:
                best = result
            if best["other_cores"] < BUSY_CORES:
                break
        return best

    for workload in chosen:
        print(f"{workload.title}: {len(workload.instances)} request rows", flush=True)
        dtypes = input_dtypes(workload)
        spec = work / f"{workload.key}.json"
        spec.write_text(json.dumps({"key": workload.key, "signature": workload.signature,
                                    "model_dir": str(workload.model_dir), "instances": workload.instances,
                                    "output": workload.output}))
        bodies = work / f"{workload.key}.jsonl"
        bodies.write_text("".join(rest_body(workload, instance) + "\n" for instance in workload.instances))

        def in_process():
            with CpuWatch() as cpu:
                out = subprocess.run(pinned([python, __file__, "--_inprocess", str(spec), str(args.duration),
                                             str(args.warmup)], server_cpu), capture_output=True, text=True, env=env,
                                     timeout=20 * (args.duration + args.warmup) + 180)
            if out.returncode != 0:
                raise RuntimeError(f"in-process measurement failed:\n{out.stderr[-3000:]}")
            return {**json.loads(out.stdout.strip().splitlines()[-1]), "other_cores": cpu.other_cores}

        limit = limits[workload.key] = quietest(in_process, f"{workload.key} in process")
        reference = limit["reference"]
        print("  in process: " + "; ".join(
            f"{name} single calls {limit[name]['single_per_s']:,.0f}/s, batches of 32 "
            f"{limit[name]['batch32_examples_per_s']:,.0f} examples/s" for name in ("eager", "session")), flush=True)

        def measure(server, label, protocol, batching, rest_port, grpc_port=None, grpc_body=None, response_bytes=None,
                    metrics_port=None):
            for concurrency in levels:
                def once():
                    before = batch_totals(metrics_port) if metrics_port else (0.0, 0.0)
                    if protocol == "REST":
                        run_wrk(rest_port, workload.key, bodies, concurrency, args.warmup, load_cpu)
                        with CpuWatch(server.pid) as cpu:
                            result = run_wrk(rest_port, workload.key, bodies, concurrency, args.duration, load_cpu)
                    else:
                        run_h2load(grpc_port, grpc_body, concurrency, args.warmup, load_cpu, work)
                        with CpuWatch(server.pid) as cpu:
                            result = run_h2load(grpc_port, grpc_body, concurrency, args.duration, load_cpu, work,
                                                response_bytes)
                    # Examples per model call over the warm-up and the measurement.
                    after = batch_totals(metrics_port) if metrics_port else (0.0, 0.0)
                    batches = after[1] - before[1]
                    return {**result, "server_cores": cpu.server_cores, "load_cores": cpu.load_cores,
                            "other_cores": cpu.other_cores,
                            "batch_mean": (after[0] - before[0]) / batches if batches else None}

                result = quietest(once, f"{workload.key} {label} {protocol} c={concurrency}")
                result.update(model=workload.key, server=label, protocol=protocol, batching=batching,
                              concurrency=concurrency)
                results.append(result)
                print(f"  {label:<8} {protocol:<4} batching {batching:<14} c={concurrency:<3} {result['rps']:>9,.0f} "
                      f"req/s  p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  errors "
                      f"{result['errors']}  CPU server {result['server_cores']:.2f} others {result['other_cores']:.2f}"
                      + (f"  ({result['first_error']})" if result["errors"] else ""), flush=True)

        if "naive" in servers:
            naive_port = free_port(8502)
            log = logs / f"naive-{workload.key}.log"
            server = children.start(pinned([python, str(ROOT / "benchmarks" / "naive_fastapi_server.py"),
                                            "--model_dir", str(workload.model_dir), "--port", str(naive_port),
                                            "--model_name", workload.key, "--signature", workload.signature],
                                           server_cpu), log, env)
            load_s = wait_ready(server, naive_port, workload.key, log, args.server_timeout)
            checks[f"{workload.key}: naive REST"] = check_rest(naive_port, workload, reference)
            print(f"  naive endpoint ready in {load_s:.1f} s; answers {describe(checks[f'{workload.key}: naive REST'])}",
                  flush=True)
            measure(server, "naive", "REST", "-", naive_port)
            children.stop(server)

        if servers & {"off", "on", "workers"}:
            grpc_requests = [grpc_request(workload, instance, dtypes) for instance in workload.instances]
            grpc_body = work / f"{workload.key}.grpc"
            grpc_body.write_bytes(grpc_frame(grpc_requests[0].SerializeToString()))
            batching_flags = ["--enable_batching", "--batching_parameters_file", args.batching_parameters_file]
            configurations = [("off", [], 1, server_cpu), ("on", batching_flags, 1, server_cpu)]
            if args.workers > 1:
                configurations.append(("workers", batching_flags + ["--workers", str(args.workers)], args.workers,
                                       None))
            for key, flags, workers, cpu in configurations:
                if key not in servers:
                    continue
                tag = "off" if key == "off" else "on" if workers == 1 else f"on, {workers} workers"
                grpc_port, rest_port = free_port(8500), free_port(8501)
                command = [tfxline, "serve", "--port", str(grpc_port), "--rest_api_port", str(rest_port),
                           "--model_name", workload.key, "--model_base_path", str(workload.base),
                           "--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "1",
                           "--monitoring_config_file", str(monitoring)] + flags
                log = logs / f"tfxline-{workload.key}-{key}.log"
                server = children.start(pinned(command, cpu), log, env)
                try:
                    load_s = wait_ready(server, rest_port, workload.key, log, args.server_timeout,
                                        ports=(grpc_port, rest_port))
                    name = f"{workload.key}: tfxline, batching {tag}"
                    checks[f"{name}, REST"] = check_rest(rest_port, workload, reference)
                    checks[f"{name}, gRPC"] = check_grpc(grpc_port, workload, grpc_requests, reference)
                    response_bytes = check_grpc_body(grpc_port, grpc_body, workload.output, reference[0])
                    print(f"  tfxline batching {tag} ready in {load_s:.1f} s; REST {describe(checks[f'{name}, REST'])}; "
                          f"gRPC {describe(checks[f'{name}, gRPC'])}; h2load's body: grpc-status 0", flush=True)
                    # With workers, a scrape reaches one process and adds up the others' last published
                    # metrics: the batch means are those of the whole server, a second or so behind.
                    measure(server, "tfxline", "REST", tag, rest_port, metrics_port=rest_port)
                    measure(server, "tfxline", "gRPC", tag, None, grpc_port, grpc_body, response_bytes,
                            metrics_port=rest_port)
                    after = check_rest(rest_port, dataclasses.replace(workload, instances=workload.instances[:8]),
                                       reference[:8])
                    if after["wrong"] or after["errors"] or server.poll() is not None:
                        notes.append(f"{workload.key}, tfxline (batching {tag}) after load: {describe(after)}")
                finally:
                    children.stop(server)
                    problems = log_problems(log)
                    if problems:
                        notes.append(f"{workload.key}, tfxline serve (batching {tag}) logged errors ({log}): "
                                     + "; ".join(problems))

    empty = None
    if servers & {"on"} and chosen:
        print("the gRPC layer alone: grpc.aio with a handler that does nothing ...", flush=True)
        port = free_port(8600)
        server = children.start(pinned([python, str(EMPTY_GRPC), "--port", str(port)], server_cpu),
                                logs / "empty-grpc.log", env)
        try:
            body = work / f"{chosen[0].key}.grpc"
            deadline = time.monotonic() + 120
            while port not in listening_ports(server.pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            size = check_empty_grpc(port, body)

            def once():
                run_h2load(port, body, max(levels), args.warmup, load_cpu, work)
                with CpuWatch(server.pid) as cpu:
                    result = run_h2load(port, body, max(levels), args.duration, load_cpu, work, size)
                return {**result, "server_cores": cpu.server_cores, "other_cores": cpu.other_cores}

            empty = quietest(once, "empty gRPC handler")
            print(f"  {empty['rps']:,.0f} calls/s at c={max(levels)}, server CPU {empty['server_cores']:.2f}",
                  flush=True)
        finally:
            children.stop(server)

    print(f"server logs: {logs}", flush=True)
    text = report(results, limits, checks, notes, empty, chosen, tools, server_cpu, load_cpu, args, levels, revision)
    print("\n" + text)
    if not args.no_report:
        write_section(ROOT / "BENCHMARKS.md", "serving", "Serving: tfxline's model server vs a naive FastAPI endpoint",
                      text)
    return 0


def check_empty_grpc(port: int, body_path: Path) -> int:
    """The empty handler's answer to h2load's body: grpc-status 0; returns its DATA size."""
    url = f"http://127.0.0.1:{port}{GRPC_PATH}"
    command = ["nghttp", "-d", str(body_path)] + [arg for h in GRPC_HEADERS for arg in ("-H", h)] + [url]
    text = subprocess.run(command[:1] + ["-v"] + command[1:], capture_output=True, timeout=30).stdout.decode(
        errors="replace")
    if re.findall(r"grpc-status: (\d+)", text) != ["0"]:
        raise RuntimeError(f"the empty gRPC handler did not answer grpc-status 0:\n{text[-1500:]}")
    return len(subprocess.run(command, capture_output=True, timeout=30).stdout)


def server_revision() -> str:
    """The commit the servers ran from, and whether serving/ had uncommitted changes."""
    def git(*args):
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "an unknown commit"
    dirty = git("status", "--porcelain", "--", "serving")
    return f"commit {commit}" + (" with uncommitted changes in serving/" if dirty else "")


def describe(check: dict) -> str:
    if check["errors"]:
        return f"{len(check['errors'])}/{check['rows']} failed (first: {check['errors'][0][:200]})"
    if check["wrong"]:
        return f"{check['wrong']}/{check['rows']} WRONG scores (max |diff| {check['max_diff']:.2g})"
    return f"all {check['rows']} rows right (max |diff| {check['max_diff']:.1g})"


def batch_totals(rest_port: int) -> tuple:
    """(examples, batches) the server has run so far, from its :tfxline:serving:batch_size metric."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}{METRICS_PATH}", timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return 0.0, 0.0
    total = sum(float(v) for v in re.findall(r"^:tfxline:serving:batch_size_sum\{[^}]*\} (\S+)$", text, re.M))
    count = sum(float(v) for v in re.findall(r"^:tfxline:serving:batch_size_count\{[^}]*\} (\S+)$", text, re.M))
    return total, count


def cpu_us(result: dict) -> float:
    """Server CPU time per answered request, in microseconds."""
    return result["server_cores"] / result["rps"] * 1e6 if result["rps"] else float("nan")


def report(results, limits, checks, notes, empty, chosen, tools, server_cpu, load_cpu, args, levels, revision) -> str:
    high = max(levels)
    lines = [
        f"Code: {revision}. Machine: {os.cpu_count()} cores (shared), load average {os.getloadavg()[0]:.2f} at the end. "
        "One example per request: REST rotates through "
        f"{args.rows} distinct rows, gRPC sends one fixed row. Each point: {args.warmup} s warm-up, then "
        f"{args.duration} s. "
        + (f"Server pinned to CPU {server_cpu}, load generator to CPU {load_cpu} (`taskset`); the in-process limit is "
           "pinned like the server; a server with several workers runs on every core (its point: one process per core), "
           f"the load generator still on CPU {load_cpu}." if server_cpu is not None else "No CPU pinning.")
        + " *server CPU*: cores the server's processes used during the measurement, and per request; *other load*: "
          "cores used by other processes on this shared machine at the same time (0 on an idle machine; a point where "
          f"it exceeded {BUSY_CORES} was measured again, up to {args.retries} times, keeping the quietest attempt).",
    ]
    for workload in chosen:
        naive = {r["concurrency"]: r for r in results if r["model"] == workload.key and r["server"] == "naive"}
        lines += ["", f"### {workload.title}, `{workload.signature}`", "",
                  "| server | protocol | batching | concurrency | req/s | x naive | p50 | p99 | errors | server CPU | "
                  "CPU per request | examples per model call | other load |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in results if r["model"] == workload.key):
            base = naive.get(r["concurrency"])
            ratio = f"{r['rps'] / base['rps']:.1f}x" if base and base["rps"] and r["server"] != "naive" else ""
            lines.append(f"| {r['server']} | {r['protocol']} | {r['batching']} | {r['concurrency']} | {r['rps']:,.0f} | "
                         f"{ratio} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['errors']} | "
                         f"{r['server_cores']:.2f} | {cpu_us(r):,.0f} us | "
                         f"{'' if r.get('batch_mean') is None else format(r['batch_mean'], '.1f')} | "
                         f"{r['other_cores']:.2f} |")
        limit = limits.get(workload.key)
        if limit:
            for name, what in (("eager", "tf.saved_model.load signature"), ("session", "tfxline's session callable")):
                lines += [
                    f"| model in process, {what} | - | - | 1 | {limit[name]['single_per_s']:,.0f} calls/s | | "
                    f"{limit[name]['single_p50_ms']:.3f} ms | {limit[name]['single_p99_ms']:.3f} ms | | 1.00 | | 1 | "
                    f"{limit['other_cores']:.2f} |",
                    f"| model in process, {what} | - | batches of 32 | 1 | "
                    f"{limit[name]['batch32_examples_per_s']:,.0f} examples/s | | {limit[name]['batch32_p50_ms']:.3f} ms "
                    f"/ batch | | | 1.00 | | 32 | {limit['other_cores']:.2f} |"]

    lines += ["", f"Targets (issue 13), at concurrency {high}: REST at least {TARGET_SPEEDUP:.0f}x the naive endpoint's "
                  f"throughput with p99 under {TARGET_P99_MS:.0f} ms; gRPC at least {TARGET_GRPC_SPEEDUP:.0f}x. The naive "
                  "endpoint is the one measured above in this run, on the same model.", "",
              f"| model | tfxline | REST x naive (>= {TARGET_SPEEDUP:.0f}x) | REST p99 (< {TARGET_P99_MS:.0f} ms) | "
              f"gRPC x naive (>= {TARGET_GRPC_SPEEDUP:.0f}x) |", "|---|---|---|---|---|"]
    for workload in chosen:
        naive = next((r for r in results if r["model"] == workload.key and r["server"] == "naive"
                      and r["concurrency"] == high), None)
        tags = dict.fromkeys(r["batching"] for r in results if r["model"] == workload.key and r["server"] == "tfxline")
        for tag in tags:
            point = {r["protocol"]: r for r in results if r["model"] == workload.key and r["server"] == "tfxline"
                     and r["batching"] == tag and r["concurrency"] == high}
            if naive is None or not naive["rps"] or not point:
                continue
            cells = [workload.key, f"batching {tag}"]
            if "REST" in point:
                rest = point["REST"]
                speedup = rest["rps"] / naive["rps"]
                cells += [f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}: {speedup:.1f}x",
                          f"{'met' if rest['p99_ms'] < TARGET_P99_MS else 'NOT met'}: {rest['p99_ms']:.1f} ms"]
            else:
                cells += ["", ""]
            if "gRPC" in point:
                speedup = point["gRPC"]["rps"] / naive["rps"]
                cells.append(f"{'met' if speedup >= TARGET_GRPC_SPEEDUP else 'NOT met'}: {speedup:.1f}x")
            else:
                cells.append("")
            if any(p["errors"] for p in point.values()):
                cells[1] += " (with errors)"
            lines.append("| " + " | ".join(cells) + " |")

    one = [r for r in results if r["server"] == "tfxline" and r["batching"] == "on" and r["concurrency"] == high]
    if one and empty:
        lines += ["", f"Where the time of a request goes (server CPU per answered request at c={high}, batching on, one "
                      "process; the model's own time from the in-process rows):", "",
                  "| model | REST | gRPC | gRPC layer alone (grpc.aio, empty handler) | model call, one example | "
                  "model call, per example in batches of 32 |", "|---|---:|---:|---:|---:|---:|"]
        for workload in chosen:
            point = {r["protocol"]: r for r in one if r["model"] == workload.key}
            limit = limits.get(workload.key)
            if not point or not limit:
                continue
            session = limit["session"]
            lines.append(f"| {workload.key} | {cpu_us(point['REST']):,.0f} us | {cpu_us(point['gRPC']):,.0f} us | "
                         f"{cpu_us(empty):,.0f} us ({empty['rps']:,.0f} calls/s) | {1e6 / session['single_per_s']:,.0f} us | "
                         f"{1e6 / session['batch32_examples_per_s']:,.1f} us |")
        for workload in chosen:
            point = {r["protocol"]: r for r in one if r["model"] == workload.key}
            if set(point) != {"REST", "gRPC"}:
                continue
            rest, grpc_point = point["REST"], point["gRPC"]
            lines += ["", f"{workload.key}: a gRPC request took {cpu_us(grpc_point):,.0f} us of server CPU, "
                          f"{cpu_us(grpc_point) / cpu_us(rest):.1f}x a REST request ({cpu_us(rest):,.0f} us). The gRPC "
                          f"layer alone (grpc.aio's Python and Cython per call, HTTP/2 in its C core, the request "
                          f"parsed) takes {cpu_us(empty):,.0f} us; the {cpu_us(grpc_point) - cpu_us(empty):,.0f} us left "
                          "are tfxline's own work on the request (TensorProtos to arrays, the checks, the response) "
                          "and the model. The model calls ran "
                          + (f"{grpc_point['batch_mean']:.1f} examples each over gRPC against "
                             f"{rest['batch_mean']:.1f} over REST" if grpc_point.get("batch_mean") and
                             rest.get("batch_mean") else "batched")
                          + ": over gRPC the requests reach the batcher one at a time (inferred: grpc.aio runs "
                            "each RPC as its own task, where a burst of REST requests is read in one pass of the "
                            "event loop), so the model runs about once per request."]

    lines += ["", "Answers checked before the load, against the in-process answers (tolerance "
              f"{SCORE_TOLERANCE:g}): " + "; ".join(f"{name}: {describe(check)}" for name, check in checks.items()) + "."]
    if any(r["batching"] == "on" for r in results):
        batching = " ".join(Path(args.batching_parameters_file).read_text().split())
        lines += ["", f"Batching on: `--enable_batching --batching_parameters_file` with `{batching}`."]
    lines += ["", f"Load generators: {tools['wrk']} (REST, one thread, N connections, keep-alive, lua script "
              f"`benchmarks/serving/predict.lua` checks every response for 200 and `predictions`); {tools['h2load']} "
              f"(gRPC: an HTTP/2 POST to `{GRPC_PATH}` of a length-prefixed PredictRequest, N connections with one "
              "stream each; h2load does not read grpc-status, so the body was first checked with the Python gRPC "
              "client and `nghttp` (grpc-status 0, right answer), and during the load whole PredictResponses are "
              "counted from the DATA bytes received). Naive endpoint: `benchmarks/naive_fastapi_server.py`, "
              "FastAPI on uvicorn, 1 worker, plain `def` endpoint, access log off."]
    others = [r["other_cores"] for r in results]
    if others and max(others) >= BUSY_CORES:
        notes.append(f"other processes used {min(others):.2f} to {max(others):.2f} cores during the points (of "
                     f"{os.cpu_count()}): where they used over a core, the server had about half of its own; ratios "
                     "between points measured under different loads say little. Re-run on an idle machine.")
    if notes:
        lines += ["", "Problems seen:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

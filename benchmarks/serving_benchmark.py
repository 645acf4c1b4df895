"""Serving: tfxline's model server against a naive per-request FastAPI endpoint, in one run.

On loopback, with the newest pushed taxi SavedModel (copied to a scratch directory first, so a
push during the run cannot swap the model under a measurement):
  1. the in-process limit: the `serving_raw` signature called directly, single calls/s and
     examples/s in batches of 32 (a child process, pinned like the servers);
  2. the naive endpoint (`benchmarks/naive_fastapi_server.py`: FastAPI on uvicorn, one worker,
     one signature call per request), REST;
  3. `tfxline serve` with batching off, then on (`benchmarks/serving/batching_parameters.pbtxt`),
     REST and gRPC.
A point during which other processes used the CPUs (this machine is shared) is measured again.
Each server is checked for correct answers first (every request row over REST and the Python gRPC
client, against the in-process scores; the raw gRPC body that h2load sends, through `nghttp`,
for grpc-status 0). Then single-example predict at each concurrency: warm-up, then a timed run.
The load generators are not Python: `wrk` (REST, lua script `benchmarks/serving/predict.lua`)
and `h2load` (gRPC as HTTP/2 POSTs of a framed PredictRequest). With two or more cores the
server gets one core and the load generator another (`taskset`).
Prints a table and writes the `serving` section of BENCHMARKS.md.

Usage: .venv/bin/python benchmarks/serving_benchmark.py [--duration 10] [--warmup 3]
           [--concurrency 1,8,32] [--model_base_path DIR] [--no-pin] [--skip-tfxline]
Needs: apt-get install -y wrk nghttp2-client
"""
import argparse
import atexit
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
MODEL_NAME = "taxi"
SIGNATURE = "serving_raw"
GRPC_PATH = "/tensorflow.serving.PredictionService/Predict"
GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]
APT = "apt-get install -y wrk nghttp2-client"
# Targets from issue 3's Benchmark section.
TARGET_SPEEDUP, TARGET_P99_MS = 10.0, 25.0
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


def wait_ready(process, rest_port: int, log_path: Path, timeout: float, ports=()) -> float:
    """Polls GET /v1/models/<name> until a version is AVAILABLE; returns seconds since start."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}"
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


# ---------------------------------------------------------------- model and request data

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


def rest_body(row: dict) -> str:
    return json.dumps({"signature_name": SIGNATURE, "instances": [row]}, separators=(",", ":"))


def grpc_request(row: dict, features: list):
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = SIGNATURE
    for feature in features:
        dtype = {"string": object}.get(feature["dtype"], feature["dtype"])
        value = row[feature["name"]]
        request.inputs[feature["name"]].CopyFrom(
            tf.make_tensor_proto(np.array([value.encode() if dtype is object else value], dtype=dtype)))
    return request


def grpc_frame(message: bytes) -> bytes:
    """gRPC length-prefixed message: compression flag 0, 4-byte big-endian length, the message."""
    return struct.pack(">BI", 0, len(message)) + message


# ---------------------------------------------------------------- in-process limit (child process)

def inprocess(model_dir: str, rows_path: str, duration: float, warmup: float) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    signature = tf.saved_model.load(model_dir).signatures[SIGNATURE]
    specs = signature.structured_input_signature[1]
    rows = json.loads(Path(rows_path).read_text())

    def tensors(batch):
        return {name: tf.constant([r[name] for r in batch], dtype=spec.dtype) for name, spec in specs.items()}

    reference = signature(**tensors(rows))["scores"].numpy().reshape(-1).tolist()
    singles = [tensors([row]) for row in rows]
    batches = [tensors([rows[(start + j) % len(rows)] for j in range(32)]) for start in range(0, len(rows), 32)]

    def run(inputs, seconds):
        latencies, index = [], 0
        end = time.perf_counter() + seconds
        while True:
            began = time.perf_counter()
            if began >= end:
                break
            signature(**inputs[index % len(inputs)])
            latencies.append(time.perf_counter() - began)
            index += 1
        return latencies

    run(singles, warmup)
    single = run(singles, duration)
    run(batches, warmup)
    batched = run(batches, duration)
    return {"reference": reference,
            "single_per_s": len(single) / sum(single),
            "single_p50_ms": percentile(single, 50) * 1e3, "single_p99_ms": percentile(single, 99) * 1e3,
            "batch32_examples_per_s": 32 * len(batched) / sum(batched),
            "batch32_p50_ms": percentile(batched, 50) * 1e3}


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


# ---------------------------------------------------------------- correctness checks

def check_rest(rest_port: int, rows: list, reference: list) -> dict:
    url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}:predict"
    worst, wrong, errors = 0.0, 0, []
    for row, expected in zip(rows, reference):
        request = urllib.request.Request(url, data=rest_body(row).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                got = json.loads(response.read())["predictions"][0]
            got = got[0] if isinstance(got, list) else got
            diff = abs(float(got) - expected)
            worst = max(worst, diff)
            wrong += diff > SCORE_TOLERANCE
        except Exception as error:  # noqa: BLE001 - recorded, reported
            body = error.read()[:200] if isinstance(error, urllib.error.HTTPError) else b""
            errors.append(f"{error} {body!r}")
    return {"rows": len(rows), "wrong": wrong, "errors": errors, "max_diff": worst}


def check_grpc(grpc_port: int, requests: list, reference: list) -> dict:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    worst, wrong, errors = 0.0, 0, []
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for request, expected in zip(requests, reference):
            try:
                response = stub.Predict(request, timeout=10)
                got = response.outputs["scores"].float_val[0]
                diff = abs(got - expected)
                worst = max(worst, diff)
                wrong += diff > SCORE_TOLERANCE
            except grpc.RpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
    return {"rows": len(requests), "wrong": wrong, "errors": errors, "max_diff": worst}


def check_grpc_body(grpc_port: int, body_path: Path, expected: float) -> int:
    """Sends h2load's exact body with nghttp; returns the byte size of a good response's DATA.
    Raises when grpc-status is not 0 or the score is wrong."""
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
    score = predict_pb2.PredictResponse.FromString(data[5:]).outputs["scores"].float_val[0]
    if abs(score - expected) > SCORE_TOLERANCE:
        raise RuntimeError(f"h2load's gRPC body scored {score}, in-process {expected}")
    return len(data)


# ---------------------------------------------------------------- load generators

def run_wrk(rest_port, bodies_path, concurrency, seconds, cpu) -> dict:
    url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}:predict"
    command = pinned(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency",
                      "-s", str(LUA), url, "--", str(bodies_path)], cpu)
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^RESULT (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    fields = {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
    first_bad = re.search(r"^FIRST_BAD (.*)$", out.stdout, re.M)
    errors = fields["bad"] + fields["connect_errors"] + fields["read_errors"] + fields["write_errors"] + fields["timeouts"]
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
    parser.add_argument("--model_base_path", default=str(ROOT / "tfxline_output" / "serving" / MODEL_NAME),
                        help="TF Serving base path; its newest version is benchmarked")
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
    parser.add_argument("--_inprocess", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._inprocess:
        model_dir, rows_path, duration, warmup = args._inprocess
        print(json.dumps(inprocess(model_dir, rows_path, float(duration), float(warmup))))
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

    # A private copy of the newest version: a push during the run cannot change the model.
    source = newest_version(Path(args.model_base_path).resolve())
    base = work / "models" / MODEL_NAME
    shutil.copytree(source, base / source.name)
    model_dir = base / source.name
    features = json.loads((model_dir / "assets.extra" / "raw_features.json").read_text())
    rows = request_rows(features, args.rows)
    (work / "rows.json").write_text(json.dumps(rows))
    bodies = work / "bodies.jsonl"
    bodies.write_text("".join(rest_body(row) + "\n" for row in rows))
    results, checks, notes = [], {}, []
    print(f"model {source} ({len(features)} raw features), {len(rows)} request rows from the taxi CSV; "
          f"server CPU {server_cpu}, load generator CPU {load_cpu}", flush=True)

    quiet = wait_for_quiet(args.quiet_wait)
    if quiet >= BUSY_CORES:
        notes.append(f"the machine was not idle at the start ({quiet:.2f} cores busy with other processes)")
    print("in-process limit ...", flush=True)
    limit = None
    for attempt in range(args.retries + 1):
        if attempt:
            print(f"  other processes used {limit['other_cores']:.2f} cores meanwhile; measuring again", flush=True)
            wait_for_quiet(args.quiet_wait / 3)
        with CpuWatch() as cpu:
            out = subprocess.run(pinned([python, __file__, "--_inprocess", str(model_dir), str(work / "rows.json"),
                                         str(args.duration), str(args.warmup)], server_cpu), capture_output=True,
                                 text=True, env=env, timeout=10 * (args.duration + args.warmup) + 120)
        if out.returncode != 0:
            raise RuntimeError(f"in-process measurement failed:\n{out.stderr[-3000:]}")
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        measured["other_cores"] = cpu.other_cores
        if limit is None or measured["other_cores"] < limit["other_cores"]:
            limit = measured
        if limit["other_cores"] < BUSY_CORES:
            break
    reference = limit["reference"]
    print(f"  single calls {limit['single_per_s']:,.0f}/s (p50 {limit['single_p50_ms']:.2f} ms), "
          f"batches of 32 {limit['batch32_examples_per_s']:,.0f} examples/s; others {limit['other_cores']:.2f}",
          flush=True)

    def measure(server, label, protocol, batching, rest_port, grpc_port=None, grpc_body=None, response_bytes=None):
        for concurrency in levels:
            best = None
            for attempt in range(args.retries + 1):
                if attempt:
                    print(f"  {label} {protocol} c={concurrency}: other processes used {best['other_cores']:.2f} "
                          f"cores during the measurement; measuring again", flush=True)
                    wait_for_quiet(args.quiet_wait / 3)
                if protocol == "REST":
                    run_wrk(rest_port, bodies, concurrency, args.warmup, load_cpu)
                    with CpuWatch(server.pid) as cpu:
                        result = run_wrk(rest_port, bodies, concurrency, args.duration, load_cpu)
                else:
                    run_h2load(grpc_port, grpc_body, concurrency, args.warmup, load_cpu, work)
                    with CpuWatch(server.pid) as cpu:
                        result = run_h2load(grpc_port, grpc_body, concurrency, args.duration, load_cpu, work,
                                            response_bytes)
                result.update(server_cores=cpu.server_cores, load_cores=cpu.load_cores, other_cores=cpu.other_cores)
                if best is None or result["other_cores"] < best["other_cores"]:
                    best = result
                if best["other_cores"] < BUSY_CORES:
                    break
            result = best
            result.update(server=label, protocol=protocol, batching=batching, concurrency=concurrency)
            results.append(result)
            print(f"  {label:<8} {protocol:<4} batching {batching:<3} c={concurrency:<3} {result['rps']:>9,.0f} req/s  "
                  f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}  "
                  f"CPU server {result['server_cores']:.2f} load {result['load_cores']:.2f} others {result['other_cores']:.2f}"
                  + (f"  ({result['first_error']})" if result["errors"] else ""), flush=True)

    # 1. The naive endpoint.
    if "naive" in servers:
        naive_port = free_port(8502)
        log = logs / "naive.log"
        print("naive FastAPI endpoint ...", flush=True)
        server = children.start(pinned([python, str(ROOT / "benchmarks" / "naive_fastapi_server.py"), "--model_dir",
                                        str(model_dir), "--port", str(naive_port)], server_cpu), log, env)
        load_s = wait_ready(server, naive_port, log, args.server_timeout)
        checks["naive REST"] = check_rest(naive_port, rows, reference)
        print(f"  ready in {load_s:.1f} s; answers {describe(checks['naive REST'])}", flush=True)
        measure(server, "naive", "REST", "-", naive_port)
        children.stop(server)

    # 2. tfxline's server, batching off and on.
    if servers & {"off", "on", "workers"}:
        grpc_request_rows = [grpc_request(row, features) for row in rows]
        grpc_body = work / "predict_request.grpc"
        grpc_body.write_bytes(grpc_frame(grpc_request_rows[0].SerializeToString()))
        batching_flags = ["--enable_batching", "--batching_parameters_file", args.batching_parameters_file]
        configurations = [("off", [], 1, server_cpu), ("on", batching_flags, 1, server_cpu)]
        if args.workers > 1:  # tfxline's --workers: one process per core, so the server gets every core
            configurations.append(("workers", batching_flags + ["--workers", str(args.workers)], args.workers, None))
        for key, flags, workers, cpu in configurations:
            if key not in servers:
                continue
            tag = "off" if key == "off" else "on" if workers == 1 else f"on, {workers} workers"
            grpc_port, rest_port = free_port(8500), free_port(8501)
            if (grpc_port, rest_port) != (8500, 8501):
                notes.append(f"ports 8500/8501 were busy; tfxline serve used {grpc_port}/{rest_port}")
            # One TensorFlow thread per server process: each process has one core to itself.
            command = [tfxline, "serve", "--port", str(grpc_port), "--rest_api_port", str(rest_port),
                       "--model_name", MODEL_NAME, "--model_base_path", str(base),
                       "--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "1"] + flags
            log = logs / f"tfxline-{key}.log"
            print(f"tfxline serve, batching {tag} ...", flush=True)
            server = children.start(pinned(command, cpu), log, env)
            try:
                load_s = wait_ready(server, rest_port, log, args.server_timeout, ports=(grpc_port, rest_port))
                checks[f"tfxline REST, batching {tag}"] = check_rest(rest_port, rows, reference)
                checks[f"tfxline gRPC, batching {tag}"] = check_grpc(grpc_port, grpc_request_rows, reference)
                response_bytes = check_grpc_body(grpc_port, grpc_body, reference[0])
                print(f"  ready in {load_s:.1f} s; REST {describe(checks[f'tfxline REST, batching {tag}'])}; "
                      f"gRPC {describe(checks[f'tfxline gRPC, batching {tag}'])}; h2load's body: grpc-status 0, "
                      f"{response_bytes}-byte response, right score", flush=True)
                measure(server, "tfxline", "REST", tag, rest_port)
                measure(server, "tfxline", "gRPC", tag, None, grpc_port, grpc_body, response_bytes)
                # After the load: still up and still right?
                after = check_rest(rest_port, rows[:8], reference[:8])
                if after["wrong"] or after["errors"] or server.poll() is not None:
                    notes.append(f"tfxline (batching {tag}) after load: {describe(after)}")
            finally:
                children.stop(server)
                problems = log_problems(log)
                if problems:
                    text = log.read_text(errors="replace")
                    why = (" (a Predict that the client cancels - h2load closes its connections with calls in flight "
                           "at the end of each run - raises CancelledError, which `except Exception` in "
                           "serving/grpc_api.py `_call` does not catch, so its `finally` hits the unassigned `code`: "
                           "the call is not counted in the metrics)"
                           if "CancelledError" in text and "UnboundLocalError" in text else "")
                    notes.append(f"tfxline serve (batching {tag}) logged errors ({log}): " + "; ".join(problems) + why)

    print(f"server logs: {logs}", flush=True)
    text = report(results, limit, checks, notes, source, tools, server_cpu, load_cpu, args, levels, revision)
    print("\n" + text)
    if not args.no_report:
        write_section(ROOT / "BENCHMARKS.md", "serving", "Serving: tfxline's model server vs a naive FastAPI endpoint", text)
    return 0


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


def report(results, limit, checks, notes, source, tools, server_cpu, load_cpu, args, levels, revision) -> str:
    naive = {r["concurrency"]: r for r in results if r["server"] == "naive"}
    lines = [
        f"Code: {revision}. Machine: {os.cpu_count()} cores (shared), load average {os.getloadavg()[0]:.2f} at the end; model: taxi "
        f"version {source.name}, `{SIGNATURE}` signature, one example per request ({args.rows} distinct rows of the "
        f"taxi CSV over REST; one fixed row over gRPC). Each point: {args.warmup} s warm-up, then {args.duration} s. "
        + (f"Server pinned to CPU {server_cpu}, load generator to CPU {load_cpu} (`taskset`); the in-process "
           f"limit is pinned like the server" + ("; the server with several workers runs on every core (its "
                                                  "point: one process per core), the load generator still on CPU "
                                                  f"{load_cpu}." if any("workers" in r["batching"] for r in results)
                                                  else ".")
           if server_cpu is not None else "No CPU pinning.")
        + " *server CPU*: cores the server's processes used during the measurement; *other load*: cores used "
          f"by other processes on this shared machine at the same time (0 on an idle machine; a point where it "
          f"exceeded {BUSY_CORES} was measured again, up to {args.retries} times, keeping the quietest attempt).",
        "",
        "| server | protocol | batching | concurrency | req/s | x naive | p50 | p99 | errors | server CPU | other load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        base = naive.get(r["concurrency"])
        ratio = f"{r['rps'] / base['rps']:.1f}x" if base and r["server"] != "naive" else ""
        lines.append(f"| {r['server']} | {r['protocol']} | {r['batching']} | {r['concurrency']} | {r['rps']:,.0f} | "
                     f"{ratio} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['errors']} | {r['server_cores']:.2f} | "
                     f"{r['other_cores']:.2f} |")
    lines += [
        f"| model in process | - | - | 1 | {limit['single_per_s']:,.0f} calls/s | | {limit['single_p50_ms']:.2f} ms | "
        f"{limit['single_p99_ms']:.2f} ms | | 1.00 | {limit['other_cores']:.2f} |",
        f"| model in process | - | batches of 32 | 1 | {limit['batch32_examples_per_s']:,.0f} examples/s | | "
        f"{limit['batch32_p50_ms']:.2f} ms / batch | | | 1.00 | {limit['other_cores']:.2f} |",
        "",
        f"Targets (issue 3): at concurrency {max(levels)}, at least {TARGET_SPEEDUP:.0f}x the naive endpoint's "
        f"throughput with p99 under {TARGET_P99_MS:.0f} ms; at concurrency {min(levels)}, p99 no worse than the "
        f"naive endpoint's. The naive endpoint is the one measured above in this run"
        + (f" ({naive[max(levels)]['rps']:,.0f} req/s at c={max(levels)}, p99 {naive[min(levels)]['p99_ms']:.2f} ms "
           f"at c={min(levels)}; the issue recorded 411 req/s and 7 ms on an unpinned, busier machine)."
           if max(levels) in naive and min(levels) in naive else "."),
        "",
        "| tfxline | throughput at c=%d (>= %.0fx naive) | p99 at c=%d (< %.0f ms) | p99 at c=%d (<= naive's) |"
        % (max(levels), TARGET_SPEEDUP, max(levels), TARGET_P99_MS, min(levels)),
        "|---|---|---|---|",
    ]
    tags = list(dict.fromkeys(r["batching"] for r in results if r["server"] == "tfxline"))
    for protocol in ("REST", "gRPC"):
        for batching in tags:
            rows = {r["concurrency"]: r for r in results
                    if r["server"] == "tfxline" and r["protocol"] == protocol and r["batching"] == batching}
            if not rows or max(levels) not in naive or max(levels) not in rows:
                continue
            high, low = rows[max(levels)], rows.get(min(levels))
            speedup = high["rps"] / naive[max(levels)]["rps"]
            cells = [f"{protocol}, batching {batching}",
                     f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}: {speedup:.1f}x",
                     f"{'met' if high['p99_ms'] < TARGET_P99_MS else 'NOT met'}: {high['p99_ms']:.1f} ms"]
            if low and min(levels) in naive:
                naive_p99 = naive[min(levels)]["p99_ms"]
                cells.append(f"{'met' if low['p99_ms'] <= naive_p99 else 'NOT met'}: {low['p99_ms']:.2f} vs "
                             f"{naive_p99:.2f} ms")
            else:
                cells.append("")
            if high["errors"] or (low and low["errors"]):
                cells[0] += " (with errors)"
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Answers checked before the load, against the in-process scores (tolerance "
              f"{SCORE_TOLERANCE:g}): " + "; ".join(f"{name}: {describe(check)}" for name, check in checks.items()) + "."]
    if any(r["batching"] == "on" for r in results):
        batching = " ".join(Path(args.batching_parameters_file).read_text().split())
        lines += ["", f"Batching on: `--enable_batching --batching_parameters_file` with `{batching}`."]
    lines += ["", f"Load generators: {tools['wrk']} (REST, one thread, N connections, keep-alive, lua script "
              f"`benchmarks/serving/predict.lua` checks every response for 200 and `predictions`); {tools['h2load']} "
              f"(gRPC: an HTTP/2 POST to `{GRPC_PATH}` of a length-prefixed PredictRequest, N connections with one "
              "stream each; h2load does not read grpc-status, so the body was first checked with the Python gRPC "
              "client and `nghttp` (grpc-status 0, right score), and during the load whole PredictResponses are "
              "counted from the DATA bytes received). Naive endpoint: `benchmarks/naive_fastapi_server.py`, "
              "FastAPI on uvicorn, 1 worker, plain `def` endpoint, access log off."]
    if notes:
        lines += ["", "Problems seen:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

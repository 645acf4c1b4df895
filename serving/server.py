"""`tfxline serve`: a drop-in for `tensorflow_model_server` (the same flags, REST and gRPC APIs)
for machines where the TF Serving binary can't run."""
import argparse
import asyncio
import gc
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional

from serving.http import HttpLimits, run_event_loop, stop_signal
from serving.registry import ModelRegistry, ModelSpec

log = logging.getLogger("tfxline.serving")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def build_parser(prog: str = "tfxline serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve SavedModels with TF Serving's REST and gRPC APIs. Flags are "
                               "tensorflow_model_server's, so scripts and manifests need no change.")
    flag = parser.add_argument

    def switch(name, help_text):
        flag(name, type=_bool, nargs="?", const=True, default=False, help=help_text)

    flag("--port", type=int, default=8500, help="gRPC port (0: no gRPC)")
    flag("--rest_api_port", type=int, default=0, help="REST port (0: no REST)")
    flag("--rest_api_num_threads", type=int, default=4 * (os.cpu_count() or 1), help="model call threads")
    flag("--rest_api_timeout_in_ms", type=int, default=30000, help="REST request timeout")
    switch("--rest_api_enable_cors_support", "answer CORS preflights and add CORS headers")
    flag("--model_name", default="default", help="model name in single-model mode")
    flag("--model_base_path", help="directory holding numeric version subdirectories (single-model mode)")
    flag("--model_config_file", help="text-format ModelServerConfig (models.config); overrides --model_name")
    flag("--model_config_file_poll_wait_seconds", type=int, default=0, help="re-read the config file (0: never)")
    flag("--file_system_poll_wait_seconds", type=int, default=1, help="look for new versions (0: once)")
    flag("--monitoring_config_file", help="text-format MonitoringConfig enabling Prometheus metrics")
    switch("--enable_batching", "batch concurrent requests")
    flag("--batching_parameters_file", help="text-format BatchingParameters (needs --enable_batching)")
    switch("--allow_version_labels_for_unavailable_models", "allow new labels on versions not loaded yet")
    flag("--max_num_load_retries", type=int, default=5, help="retries of a version that failed to load")
    flag("--load_retry_interval_micros", type=int, default=60_000_000, help="wait between load retries")
    flag("--tensorflow_intra_op_parallelism", type=int, default=0, help="TensorFlow intra-op threads (0: auto)")
    flag("--tensorflow_inter_op_parallelism", type=int, default=0, help="TensorFlow inter-op threads (0: auto)")
    extra = parser.add_argument_group("tfxline additions (the snake_case spellings are accepted too)")

    def own(name, **options):
        snake = "--" + name[2:].replace("-", "_")
        extra.add_argument(*dict.fromkeys([name, snake]), dest=snake[2:], **options)

    own("--auth-token-file", help="require 'Authorization: Bearer <token>' (REST) / 'authorization' metadata "
                                  "(gRPC, every call including HandleReloadConfigRequest) with the token in this file")
    own("--ssl-cert-file", help="serve REST and gRPC over TLS with this certificate (PEM)")
    own("--ssl-key-file", help="the certificate's private key (PEM)")
    own("--max-request-bytes", type=int, default=64 << 20,
        help="largest accepted request: REST body (also after gunzip) and gRPC message, and what the values of "
             "a gRPC TensorProto may expand to")
    own("--max-connections", type=int, default=1024, help="open REST connections at most; more get 503")
    own("--header-timeout-seconds", type=float, default=10.0,
        help="a REST request's headers must arrive within this time of its first byte (slow clients get 408)")
    own("--drain-seconds", type=float, default=20.0,
        help="on SIGTERM, how long requests already received may take to finish (new ones are refused)")
    own("--request-log-dir", help="write a sample of served requests here, for drift monitoring")
    own("--request-log-sample-rate", type=float, default=0.01, help="share of requests logged")
    own("--request-log-max-bytes", type=int, default=16 << 20, help="rotate log files at this size")
    own("--workers", type=int, default=1,
        help="server processes sharing the ports (SO_REUSEPORT), one per core: Python runs one request at a "
             "time per process, where TF Serving's C++ uses every core")
    extra.add_argument("--verbose", action="store_true", help="show TensorFlow's own logs")
    return parser


def fail(message: str) -> "SystemExit":
    print(f"tfxline serve: {message}", file=sys.stderr)
    return SystemExit(1)


def model_specs(args) -> List[ModelSpec]:
    if args.model_config_file:
        from serving.model_config import read_model_server_config

        return specs_from_config(read_model_server_config(args.model_config_file))
    if not args.model_base_path:
        raise ValueError("give --model_base_path (with --model_name) or --model_config_file")
    from serving import layout

    return [ModelSpec(args.model_name, layout.absolute(args.model_base_path))]


def specs_from_config(config) -> List[ModelSpec]:
    """ModelServerConfig to ModelSpecs, rejecting what TF Serving rejects."""
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("only model_config_list configs are supported")
    specs = []
    for model in config.model_config_list.config:
        if not os.path.isabs(model.base_path) and "://" not in model.base_path:
            raise ValueError(f"Expected model {model.name} to have an absolute path or URI; "
                             f"got base_path()={model.base_path}")
        if not model.model_platform:
            raise ValueError("Illegal setting neither ModelServerConfig::model_type nor model_platform for "
                             f"{model.name}")
        if model.model_platform != "tensorflow":
            raise ValueError(f"Model {model.name} requests unsupported platform {model.model_platform}")
        policy = model.model_version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind == "specific":
            chosen = ("specific", tuple(policy.specific.versions))
        elif kind == "all":
            chosen = ("all",)
        else:
            chosen = ("latest", policy.latest.num_versions or 1)
        specs.append(ModelSpec(model.name, model.base_path, chosen, dict(model.version_labels)))
    return specs


def _tls(args) -> Optional[ssl.SSLContext]:
    if not args.ssl_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.ssl_cert_file, args.ssl_key_file)
    return context


# Set in worker processes: "<index>:<metrics directory>".
WORKER_ENV = "TFXLINE_SERVE_WORKER"


def supervise(argv: List[str], workers: int) -> int:
    """Starts `workers` server processes on the same ports and stops them all when one exits
    (so the orchestrator restarts a whole, healthy server) or on SIGTERM/SIGINT."""
    metrics_dir = tempfile.mkdtemp(prefix="tfxline-serve-metrics-")
    children = [subprocess.Popen([sys.executable, "-m", "serving.server", *argv],
                                 env={**os.environ, WORKER_ENV: f"{index}:{metrics_dir}"}) for index in range(workers)]
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    code = 0
    while not stopping.wait(0.5):
        exited = next((child for child in children if child.poll() is not None), None)
        if exited is not None:
            code = exited.returncode or 1
            log.error("a server process exited with %s; stopping the others", exited.returncode)
            break
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        child.wait()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tfxline serve: %(message)s", stream=sys.stderr)
    if args.batching_parameters_file and not args.enable_batching:
        raise fail("--batching_parameters_file needs --enable_batching")
    if args.rest_api_port and args.rest_api_port == args.port:
        raise fail("--rest_api_port must differ from --port")
    if bool(args.ssl_cert_file) != bool(args.ssl_key_file):
        raise fail("--ssl_cert_file and --ssl_key_file go together")
    try:
        specs = model_specs(args)
        options = _server_options(args)
    except (ValueError, OSError) as error:
        raise fail(str(error))
    if args.workers > 1 and WORKER_ENV not in os.environ:
        return supervise(argv, args.workers)

    from serving.saved_model import configure_threads, load_saved_model

    if not args.verbose:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TF1 loader deprecation notices
    configure_threads(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism)
    import serving.grpc_api
    import serving.inference
    import serving.rest  # noqa: F401 - imported before the freeze below

    # What is imported (TensorFlow, gRPC, protobuf: ~350,000 objects) lives as long as the process:
    # frozen once, before any model loads, it is out of every full collection (measured: 400 ms
    # -> 7 ms). Models are never frozen, so a replaced version is freed.
    gc.collect()
    gc.freeze()
    registry = ModelRegistry(load_saved_model, args.max_num_load_retries, args.load_retry_interval_micros / 1e6,
                             args.allow_version_labels_for_unavailable_models)
    try:
        registry.configure(specs)
    except Exception as error:
        raise fail(f"Failed to start server. Error: {error}")
    errors = registry.startup_errors()
    if errors:
        raise fail(f"Failed to start server. Error: {'; '.join(errors)}")
    run_event_loop(serve(args, registry, options))
    return 0


def _server_options(args) -> dict:
    from serving.batching import BatchingOptions
    from serving.model_config import parse_batching_parameters, parse_monitoring_config

    options = {"batching": None, "monitoring_path": None, "auth_token": None}
    if args.enable_batching:
        text = ""  # without a file, BatchingParameters' defaults
        if args.batching_parameters_file:
            with open(args.batching_parameters_file) as handle:
                text = handle.read()
        try:
            options["batching"] = BatchingOptions.from_parameters(parse_batching_parameters(text))
        except ValueError as error:
            raise ValueError(f"{error}; fix {args.batching_parameters_file or 'the batching parameters'}") from None
    if args.monitoring_config_file:
        with open(args.monitoring_config_file) as handle:
            enabled, path = parse_monitoring_config(handle.read())
        options["monitoring_path"] = path if enabled else None
    if args.auth_token_file:
        with open(args.auth_token_file) as handle:
            options["auth_token"] = handle.read().strip()
        if not options["auth_token"]:
            raise ValueError(f"{args.auth_token_file} is empty")
    return options


def _share_metrics(metrics, index: str, directory: str):
    """Each worker publishes its metrics every second; the one that answers a scrape adds up
    the others', so Prometheus sees the whole server whichever process it reaches."""
    own = os.path.join(directory, f"worker-{index}.json")

    def publish_forever():
        while True:
            staging = own + ".tmp"
            with open(staging, "w") as handle:
                json.dump(metrics.snapshot(), handle)
            os.replace(staging, own)
            time.sleep(1)

    def peers():
        snapshots = []
        for name in os.listdir(directory):
            if name.endswith(".json") and os.path.join(directory, name) != own:
                try:
                    with open(os.path.join(directory, name)) as handle:
                        snapshots.append(json.load(handle))
                except (OSError, ValueError):
                    continue  # a worker that is starting or gone
        return snapshots

    threading.Thread(target=publish_forever, name="metrics-share", daemon=True).start()
    return peers


async def serve(args, registry: ModelRegistry, options: dict) -> None:
    from serving.inference import InferenceService
    from serving.metrics import Metrics
    from serving.rest import RestOptions, start_rest_server

    request_log = None
    if args.request_log_dir:
        from serving.request_log import RequestLog

        request_log = RequestLog(args.request_log_dir, args.request_log_sample_rate, args.request_log_max_bytes)
    service = InferenceService(registry, Metrics(serves=registry.serves), options["batching"],
                               args.rest_api_num_threads, request_log)
    tls = _tls(args)
    stop = threading.Event()
    reload_config = (lambda: registry.configure(model_specs(args))) if args.model_config_file else None
    watcher = threading.Thread(target=registry.watch, name="version-watcher", daemon=True, args=(
        max(args.file_system_poll_wait_seconds, 0) or 3600 * 24, stop, reload_config,
        args.model_config_file_poll_wait_seconds))
    if args.file_system_poll_wait_seconds > 0 or args.model_config_file_poll_wait_seconds > 0:
        watcher.start()

    worker = os.environ.get(WORKER_ENV)
    peers = None
    if worker is not None:
        peers = _share_metrics(service.metrics, *worker.split(":", 1))
    rest_server = None
    if args.rest_api_port:
        limits = HttpLimits(max_body_bytes=args.max_request_bytes, header_timeout=args.header_timeout_seconds,
                            max_connections=args.max_connections)
        rest_options = RestOptions(options["monitoring_path"], options["auth_token"], args.max_request_bytes,
                                   args.rest_api_timeout_in_ms / 1000, args.rest_api_enable_cors_support, peers,
                                   limits)
        rest_server = await start_rest_server(service, rest_options, args.rest_api_port, tls,
                                              reuse_port=worker is not None)
        log.info("Exporting HTTP/REST API at:localhost:%d ...", args.rest_api_port)
    grpc_server = None
    if args.port:
        from serving.grpc_api import start_grpc_server

        grpc_server = await start_grpc_server(service, args.port, options["auth_token"], args.ssl_cert_file,
                                              args.ssl_key_file, reload_config=lambda config: registry.configure(
                                                  specs_from_config(config)), max_request_bytes=args.max_request_bytes)
        log.info("Running gRPC ModelServer at 0.0.0.0:%d ...", args.port)

    await stop_signal()
    log.info("stopping: answering the requests already received, refusing new ones (up to %g s)",
             args.drain_seconds)
    stop.set()
    drains = []
    if grpc_server is not None:
        drains.append(grpc_server.stop(grace=args.drain_seconds))
    if rest_server is not None:
        drains.append(rest_server.drain(args.drain_seconds))
    await asyncio.gather(*drains)
    if request_log is not None and not request_log.flush(args.drain_seconds):
        log.warning("request log: samples still queued after %g s were not written", args.drain_seconds)


if __name__ == "__main__":
    sys.exit(main())

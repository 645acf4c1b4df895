"""`tfxline edge`: batch scoring on the device with the LiteRT runtime (no TensorFlow)."""
import argparse
import csv
import json
import sys
from typing import List, Optional

from serving import command_flags, layout
from serving.edge import runtime


def _read_rows(path: str) -> List[dict]:
    if path.endswith(".jsonl"):
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _predict(args) -> int:
    base = layout.join(args.edge_dir, args.model_name)
    model = (runtime.load(layout.join(base, str(args.version)), args.variant) if args.version
             else runtime.load_newest(base, args.variant))
    if model is None:
        print(f"tfxline edge: no loadable model under {base}", file=sys.stderr)
        return 1
    rows = _read_rows(args.file)
    known = {item["name"] for item in model.inputs}
    # CSV files usually carry extra columns (ids, the label); only the model's features are sent.
    rows = [{k: v for k, v in row.items() if k in known} for row in rows] if args.file.endswith(".csv") else rows
    scores = model.predict(rows)
    for index, score in enumerate(scores):
        print(json.dumps({"row": index, model.output: [round(float(s), 6) for s in score.reshape(-1)]}))
    print(f"tfxline edge: scored {len(rows)} rows with version {model.version} ({args.variant})", file=sys.stderr)
    return 0


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    command_flags.add(parser, "edge")
    parser.add_argument("--variant", choices=sorted(runtime.VARIANTS), default="float")


def _serve(args) -> int:
    import logging

    from serving.edge.serve import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s tfxline edge: %(message)s")
    token = None
    if args.auth_token_file:
        with open(args.auth_token_file) as handle:
            token = handle.read().strip()
    serve(args.edge_dir, args.model_name, args.rest_api_port, args.variant, args.file_system_poll_wait_seconds, token)
    return 0


def _stream(args) -> int:
    import logging
    import signal
    import threading

    from serving.edge.stream import EdgeStream

    logging.basicConfig(level=logging.INFO, format="%(asctime)s tfxline edge: %(message)s")
    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        print(f"tfxline edge: --broker {args.broker!r} is not HOST:PORT; e.g. --broker localhost:1883",
              file=sys.stderr)
        return 2
    password = None
    if args.password_file:
        with open(args.password_file) as handle:
            password = handle.read().strip()
    topic = f"tfxline/{args.model_name}"
    stream = EdgeStream(args.edge_dir, args.model_name, host, int(port), args.input_topic or f"{topic}/requests",
                        args.output_topic or f"{topic}/scores", args.dead_letter_topic or f"{topic}/dead-letter",
                        args.stats_topic or f"{topic}/stats", args.window_seconds, args.variant, args.id_field,
                        args.qos, args.max_batch, args.file_system_poll_wait_seconds, args.client_id,
                        args.username, password)
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    stream.run(stop)
    print(f"tfxline edge: stream stopped; {stream.scored:,} scored, {stream.dead_lettered:,} dead-lettered",
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfxline edge", description="Run published TFLite models on the device.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser("predict", help="score a CSV or JSONL file",
                                  description="Score every row of FILE (.csv or .jsonl) and print JSON lines.")
    predict.add_argument("file", help="rows of raw features: a CSV with a header, or JSON lines")
    _add_model_flags(predict)
    predict.add_argument("--version", type=int, help="a version number (default: the newest loadable)")
    predict.set_defaults(handler=_predict)

    serve = commands.add_parser("serve", help="TF Serving's REST predict API on the device",
                                description="Serve the newest published TFLite version with TF Serving's REST "
                                            "API; new versions are picked up as they are published.")
    _add_model_flags(serve)
    serve.add_argument("--rest_api_port", type=int, default=8501)
    serve.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                       help="how often to look for a new version")
    serve.add_argument("--auth-token-file", "--auth_token_file",
                       help="require 'Authorization: Bearer <token>' with this file's token")
    serve.set_defaults(handler=_serve)

    stream = commands.add_parser(
        "stream", help="score MQTT messages and publish the results",
        description="Subscribe to an MQTT topic of JSON feature objects, score them with the newest published "
                    "TFLite version, publish results, dead letters (malformed messages with the reason) and "
                    "windowed statistics. Topics default to tfxline/<model>/{requests,scores,dead-letter,stats}.")
    _add_model_flags(stream)
    stream.add_argument("--broker", default="localhost:1883", help="the MQTT broker, HOST:PORT")
    stream.add_argument("--input-topic", "--input_topic", help="topic (filter) to subscribe to")
    stream.add_argument("--output-topic", "--output_topic", help="topic of the results")
    stream.add_argument("--dead-letter-topic", "--dead_letter_topic", help="topic of the messages that were refused")
    stream.add_argument("--stats-topic", "--stats_topic", help="topic of the windowed statistics")
    stream.add_argument("--window-seconds", "--window_seconds", type=float, default=60.0,
                        help="length of the statistics windows")
    stream.add_argument("--id-field", "--id_field", default="id", help="message field echoed back, not a feature")
    stream.add_argument("--qos", type=int, choices=[0, 1, 2], default=1, help="MQTT quality of service")
    stream.add_argument("--max-batch", "--max_batch", type=int, default=256, help="most messages scored in one call")
    stream.add_argument("--client-id", "--client_id", default="", help="MQTT client id (default: random)")
    stream.add_argument("--username", help="MQTT user name")
    stream.add_argument("--password-file", "--password_file", help="file holding the MQTT password")
    stream.add_argument("--file_system_poll_wait_seconds", type=float, default=5.0,
                        help="how often to look for a new version")
    stream.set_defaults(handler=_stream)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from config import ConfigError

    try:
        command_flags.fill_defaults(args, "edge")
    except ConfigError as error:
        print(f"tfxline edge: config error: {error}", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (runtime.EdgeModelError, runtime.BadInput, OSError) as error:
        print(f"tfxline edge: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

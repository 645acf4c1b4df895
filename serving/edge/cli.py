"""`tfxline edge`: batch scoring on the device with the LiteRT runtime (no TensorFlow)."""
import argparse
import csv
import json
import os
import sys
from typing import List, Optional

from serving.edge import runtime


def _read_rows(path: str) -> List[dict]:
    if path.endswith(".jsonl"):
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _predict(args) -> int:
    base = os.path.join(args.edge_dir, args.model_name)
    model = (runtime.load(os.path.join(base, str(args.version)), args.variant) if args.version
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
    parser.add_argument("--edge-dir", "--edge_dir", default="tfxline_output/edge",
                        help="the directory the pipeline publishes to")
    parser.add_argument("--model-name", "--model_name", default="taxi")
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
    serve.add_argument("--auth_token_file", help="require 'Authorization: Bearer <token>' with this file's token")
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.handler(args)
    except (runtime.EdgeModelError, runtime.BadInput, OSError) as error:
        print(f"tfxline edge: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

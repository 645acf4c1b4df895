"""The `tfxline` command. The config is validated before anything heavy is imported, so a
bad config fails in one line within a second."""
import argparse
import atexit
import os
import sys
import threading
from typing import List, Optional

from config import DEFAULT_CONFIG, ConfigError, load_config


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help="pipeline config YAML (default: the Chicago taxi config shipped with tfxline)")
    parser.add_argument("--verbose", action="store_true", help="show TFX, Beam and TensorFlow logs")


def _run(args) -> int:
    from pipeline.preflight import check_csv_files, DataError
    from pipeline import local, summary

    config = load_config(args.config)
    try:
        rows = check_csv_files(config)
    except DataError as error:
        print(f"tfxline: data error: {error}", file=sys.stderr)
        return 1
    print(f"tfxline run: pipeline '{config.name}' ({config.task}) on {rows:,} rows from {config.data.path}")
    print(f"             output {local.pipeline_root(config)}, serving {config.output.serving}")
    try:
        seconds = local.run_local(config, verbose=args.verbose)
    except Exception as error:  # the failing component's own error, shown without a stack trace
        print(f"\ntfxline: the pipeline stopped: {type(error).__name__}: {error}", file=sys.stderr)
        if not args.verbose:
            print("(run again with --verbose for the full logs)", file=sys.stderr)
        return 1
    print()
    print(summary.format_summary(summary.collect(config), seconds))
    return 0


def _compile(args) -> int:
    from pipeline.kubeflow import compile_pipeline

    config = load_config(args.config)
    path = compile_pipeline(config, args.output)
    print(f"tfxline: Kubeflow Pipelines V2 spec written to {path}")
    return 0


def _schema_draft(args) -> int:
    from schema.curate import draft_schema, write_schema

    config = load_config(args.config)
    write_schema(draft_schema(config), args.output)
    print(f"tfxline: draft schema written to {args.output}; review it, then point schema.curated_path at it")
    return 0


# Commands with their own parsers; `edge` imports the LiteRT runtime only, never TensorFlow.
DELEGATED = {
    "serve": ("serving.server", "TF Serving-compatible model server: tfxline serve --help"),
    "release": ("serving.release", "canary, promote, rollback by version labels: tfxline release --help"),
    "edge": ("serving.edge.cli", "edge device commands (LiteRT only): tfxline edge --help"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfxline", description="TFX pipeline, serving and edge runtime.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the pipeline locally (Beam DirectRunner, SQLite MLMD)",
                              description="Run every component locally and print a summary.")
    _add_config(run)
    run.set_defaults(handler=_run)

    compile_ = commands.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines (V2 YAML)",
                                   description="Write a KFP V2 PipelineSpec YAML for the config.")
    _add_config(compile_)
    compile_.add_argument("--output", default="tfxline_pipeline.yaml", help="YAML file to write")
    compile_.set_defaults(handler=_compile)

    schema = commands.add_parser("schema", help="schema tools", description="Schema tools.")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True, metavar="SUBCOMMAND")
    draft = schema_commands.add_parser("draft", help="infer and curate a schema from the config's data",
                                       description="Infer a schema with TFDV and add tfxline's curation.")
    _add_config(draft)
    draft.add_argument("--output", required=True, help="schema.pbtxt to write")
    draft.set_defaults(handler=_schema_draft)

    for name, (_, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in DELEGATED:
        import importlib

        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if hasattr(args, "verbose"):
            from pipeline.local import prepare_environment

            prepare_environment(args.verbose)
        return args.handler(args)
    except ConfigError as error:
        print(f"tfxline: config error: {error}", file=sys.stderr)
        return 2


# Client libraries that Beam's IO transforms import (BigQuery, Pub/Sub, MongoDB), and scikit-learn,
# which nltk imports for a classifier wrapper when TFMA imports its ROUGE metric: 2.8 s of each
# run's start-up. Each importer does without them when they are missing, and no part of a tfxline
# run uses them.
UNUSED_MODULES = ("google.cloud.bigquery", "google.cloud.bigquery_storage_v1", "google.cloud.pubsub", "pymongo",
                  "sklearn")


def console_main() -> None:
    """The installed `tfxline` command (and `python -m pipeline.cli`): `main` with two settings
    for the whole process, which in-process callers of `main` do not get. UNUSED_MODULES are not
    imported, and the exit skips the interpreter's teardown, which frees TensorFlow's, Beam's and
    TFX's objects one by one (1.0-1.5 s after a run) in a process that is ending anyway. Threads
    are joined, exit handlers run and output is flushed first, as on a normal exit."""
    for name in UNUSED_MODULES:
        # None in sys.modules makes `import name` raise ModuleNotFoundError.
        sys.modules.setdefault(name, None)
    code = main()
    # What the interpreter does first on exit: run threading's exit hooks (they stop idle
    # ThreadPoolExecutor workers), then join the non-daemon threads.
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()

"""The `tfxline` command. The config is validated before anything heavy is imported, so a
bad config fails in one line within a second."""
import argparse
import sys
from typing import List, Optional

from config import DEFAULT_CONFIG, KUBEFLOW_TARGETS, ConfigError, load_config, parse_config, speedups
from metadata.errors import MetadataError
from pipeline.kubeflow import KubeflowError
from pipeline.spec_runner import SpecRunError
from pipeline.submit import SubmitError

# Problems these commands phrase as one line with what to do.
COMMAND_ERRORS = (KubeflowError, SubmitError, SpecRunError, MetadataError)


DEFAULT_SPEC = "tfxline_pipeline.yaml"


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=KUBEFLOW_TARGETS,
                        help="kubeflow (open-source KFP) or vertex (Vertex AI Pipelines); default: kubeflow.target")
    parser.add_argument("--image", help="the image every component runs (default: kubeflow.image)")


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help="pipeline config YAML (default: the Chicago taxi config shipped with tfxline)")
    parser.add_argument("--verbose", action="store_true", help="show TFX, Beam and TensorFlow logs")


def _with_beam_profile(config, profile):
    """The config with another `beam.profile` (validated by the config's own rules)."""
    if profile is None:
        return config
    raw = config.model_dump(by_alias=True)
    raw["beam"]["profile"] = profile
    return parse_config(raw, "--beam-profile")


def _run(args) -> int:
    from metadata import store
    from pipeline.preflight import check_csv_files, DataError
    from pipeline import local, summary

    config = _with_beam_profile(load_config(args.config), args.beam_profile)
    try:
        rows = check_csv_files(config)
    except DataError as error:
        print(f"tfxline: data error: {error}", file=sys.stderr)
        return 1
    store.check_store(config)
    print(f"tfxline run: pipeline '{config.name}' ({config.task}) on {rows:,} rows from {config.data.path}")
    print(f"             output {local.pipeline_root(config)}, serving {config.output.serving}")
    try:
        seconds = local.run_local(config, verbose=args.verbose)
    except Exception as error:  # the failing component's own error, shown without a stack trace
        if args.verbose:
            raise
        print(f"\ntfxline: the pipeline stopped: {local.failure_line(error, config)}", file=sys.stderr)
        print("(run again with --verbose for the full logs)", file=sys.stderr)
        return 1
    print()
    print(summary.format_summary(summary.collect(config), seconds))
    return 0


def _compile(args) -> int:
    from pipeline import kubeflow

    config = load_config(args.config)
    target = kubeflow.target_of(config, args.target)
    image = kubeflow.image_of(config, args.image)
    if args.spec:
        spec = kubeflow.read_spec(args.spec)
        _check(config, spec, target, image, args.spec, args.verbose)
        print(f"tfxline compile: {args.spec} passes every check for target {target}")
        return 0
    spec = kubeflow.build_spec(config, target, image)
    if args.check:
        _check(config, spec, target, image, "the compiled spec", args.verbose)
    path = kubeflow.write_spec(spec, args.output)
    checked = ", checked" if args.check else ""
    print(f"tfxline compile: Kubeflow Pipelines spec for target {target} (schema {spec['schemaVersion']}, "
          f"{len(spec['root']['dag']['tasks'])} tasks{checked}) written to {path}")
    print(f"  parameters: {kubeflow.parameter_summary(spec)}")
    return 0


def _check(config, spec, target, image, what, verbose: bool) -> None:
    from pipeline import kubeflow, spec_lint

    problems = spec_lint.lint(spec, config, target, image)
    if verbose:
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    if problems:
        more = f" (and {len(problems) - 1} more; --verbose lists them)" if len(problems) > 1 else ""
        raise kubeflow.KubeflowError(f"{what} is not a spec for target {target}: {problems[0]}{more}")


def _submit(args) -> int:
    from pipeline import kubeflow, submit

    config = load_config(args.config)
    target = kubeflow.target_of(config, args.target)
    image = kubeflow.image_of(config, args.image)
    spec = kubeflow.read_spec(args.spec)
    parameters = submit.parse_parameters(spec, args.param)
    endpoint = args.endpoint or config.kubeflow.endpoint
    if not endpoint:
        raise kubeflow.KubeflowError("no Kubeflow Pipelines endpoint: set kubeflow.endpoint or pass --endpoint")
    token = submit.token_from(config, args.token_env)
    submit.check_endpoint(endpoint, token)
    _check(config, spec, target, image, args.spec, args.verbose)
    experiment = args.experiment or config.kubeflow.experiment
    done = submit.submit(config, args.spec, spec, endpoint, experiment, args.namespace or config.kubeflow.namespace,
                         token, parameters, args.run_name)
    state = "reused (the same spec was uploaded before)" if done.version_reused else "uploaded"
    print(f"tfxline submit: pipeline '{config.name}' version {done.version_name} {state} at {endpoint}")
    print(f"tfxline submit: run '{done.run_name}' ({done.run_id}) started in experiment '{experiment}': {done.url}")
    return 0


def _dry_run(args) -> int:
    from pipeline import kubeflow, spec_runner, submit

    config = load_config(args.config)
    target = kubeflow.target_of(config, args.target)
    image = kubeflow.image_of(config, args.image)
    spec = kubeflow.read_spec(args.spec)
    parameters = submit.parse_parameters(spec, args.param)
    _check(config, spec, target, image, args.spec, args.verbose)
    store = spec_runner.ObjectStore(args.store)
    if args.seed:
        for uri in spec_runner.seed(store, config):
            print(f"tfxline dry-run: seeded {uri} ({store.local(uri)})")
    run, record = spec_runner.dry_run(config, spec, store, target, parameters)
    print(f"tfxline dry-run: {len(run.tasks)} tasks of {args.spec} in {run.seconds:.1f} s (run {run.run_id}); "
          f"its record: {record}")
    pushed = run.artifact("Pusher", "pushed_model") if "Pusher" in run.tasks else None
    if pushed and pushed.get("metadata", {}).get("pushed"):
        destination = pushed["metadata"]["pushed_destination"]
        print(f"tfxline dry-run: pushed {destination} ({store.local(destination)})")
    return 0


def _schema_draft(args) -> int:
    from schema.curate import draft_schema, write_schema

    config = load_config(args.config)
    write_schema(draft_schema(config), args.output)
    print(f"tfxline schema draft: written to {args.output}; review it, then point schema.curated_path at it")
    return 0


def _score(args) -> int:
    from config import beam

    config = load_config(args.config)
    scoring = config.scoring
    pipeline_args = beam.pipeline_args(config, args.beam_profile, image=config.kubeflow.image)
    speedups.activate(config.speedups, pipeline_args)  # before Beam is imported
    from scoring import batch
    from scoring.model import ScoringError, resolve

    try:
        model = resolve(args.serving_dir or config.output.serving, args.model_name or config.name, args.version)
        job = batch.Job(args.input, args.output, model,
                        args.id_columns.split(",") if args.id_columns else scoring.id_columns, args.format,
                        args.batch_size or scoring.batch_size,
                        scoring.max_reject_share if args.max_reject_share is None else args.max_reject_share)
        result = batch.run(job, pipeline_args)
    except ScoringError as error:
        print(f"tfxline score: {error}", file=sys.stderr)
        return 1
    print(f"tfxline score: {result.scored:,} rows scored with {model.name} version {model.version} in "
          f"{result.seconds:.1f} s ({result.scored / max(result.seconds, 1e-9):,.0f} rows/s), {result.rejected:,} "
          f"rejected; {result.summary_path}")
    failure = batch.reject_failure(job, result)
    if failure:
        print(f"tfxline score: {failure}", file=sys.stderr)
        return 1
    return 0


def _stream(args) -> int:
    from config import beam

    config = load_config(args.config)
    pipeline_args = beam.pipeline_args(config, args.beam_profile, image=config.kubeflow.image)
    speedups.activate(config.speedups, pipeline_args)
    from scoring.model import ScoringError, resolve
    from scoring.stream import StreamSettings, run_pubsub

    try:
        model = resolve(args.serving_dir or config.output.serving, args.model_name or config.name, args.version)
        settings = StreamSettings(args.id_field, config.scoring.batch_size, config.scoring.window_seconds)
        run_pubsub(model, settings, args.subscription, args.output_topic, args.dead_letter_topic, args.stats_topic,
                   pipeline_args)
    except ScoringError as error:
        print(f"tfxline stream: {error}", file=sys.stderr)
        return 1


def _review(args) -> int:
    from review import facts, model_card, report

    config = load_config(args.config)
    if args.list_runs:
        for run in report.list_runs(config):
            print(f"{run['run_id']}  {run['summary']}")
        return 0
    try:
        built = report.build(config, args.run, args.config)
    except (facts.ReviewProblem, model_card.CardError) as problem:
        print(f"tfxline review: {problem}", file=sys.stderr)
        return 1
    paths = report.write(config, built, args.output)
    print(paths["html"])
    placeholders = built["model_card"]["placeholders"]
    if args.strict and placeholders:  # a failing command prints one line: the notes stay in the report
        print(f"tfxline review: --strict: the model card still has {len(placeholders)} placeholder(s) "
              f"({', '.join(placeholders)}); write them in {config.review.model_card}"
              + (f" (template: {paths['card_template']})" if "card_template" in paths else ""), file=sys.stderr)
        return 1
    for note in built["notes"] + [built["model_card"]["note"]] * bool(placeholders):
        print(f"tfxline review: {note}", file=sys.stderr)
    return 0
def _monitor(args) -> int:
    from monitoring import exporter, monitor, report

    config = load_config(args.config)
    versions = args.model_version or None

    def once():
        return monitor.run(config, source=args.requests, versions=versions, training_stats=args.training_stats,
                           model_version=versions[0] if versions and len(versions) == 1 else None,
                           window_rows=args.window_rows, window_seconds=args.window_seconds,
                           now_ms=None if args.until is None else args.until * 1000,
                           beam_args=args.beam_arg if args.beam else None)

    if args.serve:
        return exporter.serve(once, config.name, args.port, args.interval, args.host, args.textfile)
    try:
        result = once()
    except monitor.MonitorError as error:
        print(f"tfxline monitor: {error}", file=sys.stderr)
        return report.ERROR
    print(report.format_text(result, args.all_features))
    if args.json:
        report.write_json(result, args.json)
    if args.stats_dir:
        report.statistics_files(result, args.stats_dir)
    if args.textfile:
        report.write_textfile(report.prometheus_text(result, config.name, last_run=result.created), args.textfile)
    return report.DRIFT if result.drifted or result.concept_drifted else report.NO_DRIFT


def _feedback_ingest(args) -> int:
    from monitoring import feedback

    config = load_config(args.config, resolve_inputs=False)  # the data need not be on the serving host
    try:
        result = feedback.ingest(config, args.file, args.requests)
    except feedback.FeedbackError as error:
        print(f"tfxline feedback ingest: {error}", file=sys.stderr)
        return 1
    print(f"tfxline feedback ingest: {feedback.summary(result, args.file)}")
    return 0


def _lineage(args) -> int:
    from pipeline import lineage

    found = lineage.collect(load_config(args.config, resolve_inputs=False), args.version)
    print(lineage.format_text(found))
    if args.json:
        lineage.write_json(found, args.json)
    return 0


def _simulate(args) -> int:
    from monitoring import simulate

    config = load_config(args.config)
    shifts = simulate.Shifts(args.scale, args.offset, args.move_share, args.new_category, args.missing,
                             args.label_threshold)
    try:
        files = simulate.source_files(config, args.source)
        path, span = simulate.output_path(config, args.output, args.span)
        rows, done = simulate.simulate(config, shifts, path, files, args.seed, args.rows)
    except simulate.SimulateError as error:
        print(f"tfxline data simulate: {error}", file=sys.stderr)
        return 1
    where = f" (span {span})" if span is not None else ""
    print(f"tfxline data simulate: {rows:,} rows written to {path}{where}; "
          + ("; ".join(done) if done else "no shifts"))
    return 0


def _flag(parser, name: str, **options) -> None:
    """A tfxline flag: kebab-case, with its snake_case spelling as an alias."""
    spellings = [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if "-" in name else [])
    parser.add_argument(*spellings, **options)


def _timestamp(text: str) -> float:
    import datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.rstrip("Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither Unix seconds nor an ISO 8601 time") from None
    return moment.replace(tzinfo=moment.tzinfo or datetime.timezone.utc).timestamp()


def _add_monitor(commands) -> None:
    monitor = commands.add_parser(
        "monitor", help="skew and drift of served requests per model version (exit 0 none, 3 drift, 1 error)",
        description="Compare the logged requests of each model version with the data it was trained on (skew), "
                    "and the newest window with the previous one and with training (drift). Exit codes: 0 no "
                    "drift, 3 drift, 1 the requests or training statistics could not be read, 2 config error.")
    _add_config(monitor)
    _flag(monitor, "requests", help="request log directory (default: monitoring.request_log_dir, else "
                                    "<output root>/request_log), or a .tfrecord, .csv or .jsonl file of requests")
    _flag(monitor, "model-version", type=int, action="append",
          help="monitor this version only (repeatable); the version of requests that carry none")
    _flag(monitor, "training-stats", help="training statistics (FeatureStats.pb of a DataProfile or of "
                                          "--stats-dir) instead of finding them in ML Metadata")
    _flag(monitor, "window-rows", type=int, help="window size in requests (default: monitoring.window_rows)")
    _flag(monitor, "window-seconds", type=float, help="windows by time instead: the last S seconds, and the S before")
    _flag(monitor, "until", type=_timestamp, help="windows by time end here (Unix seconds or ISO 8601 UTC, "
                                                  "e.g. 2026-11-24T12:00:00; default: now)")
    _flag(monitor, "json", help="also write the report as JSON to this file")
    _flag(monitor, "stats-dir", help="also write each window's statistics as TFDV DatasetFeatureStatisticsList files")
    _flag(monitor, "textfile", help="also write the Prometheus gauges to this file (node-exporter textfile collector)")
    _flag(monitor, "all-features", action="store_true", help="list every feature, not only the drifted ones")
    _flag(monitor, "beam", action="store_true", help="compute the statistics with TFDV on Apache Beam, for logs "
                                                     "that outgrow one machine (windows by time)")
    _flag(monitor, "beam-arg", action="append", default=[], metavar="FLAG",
          help="a Beam pipeline option for --beam (repeatable), e.g. --beam-arg=--runner=DataflowRunner")
    _flag(monitor, "serve", action="store_true", help="keep running: re-check every --interval and serve the "
                                                      "gauges at http://HOST:PORT/metrics")
    _flag(monitor, "port", type=int, default=9108, help="metrics port with --serve (default 9108)")
    _flag(monitor, "host", default="0.0.0.0", help="metrics address with --serve")
    _flag(monitor, "interval", type=float, default=60.0, help="seconds between checks with --serve (default 60)")
    monitor.set_defaults(handler=_monitor)


def _add_feedback(commands) -> None:
    feedback = commands.add_parser("feedback", help="delayed labels of served requests",
                                   description="Delayed labels of served requests.")
    feedback_commands = feedback.add_subparsers(dest="feedback_command", required=True, metavar="SUBCOMMAND")
    ingest = feedback_commands.add_parser(
        "ingest", help="join a feedback file (request id, label, time) to the logged requests, exactly once",
        description="Join the labels in FILE (CSV with a header, or JSON lines; columns request_id, label, time "
                    "and optionally row) to the requests in the request log, each logged example at most once "
                    "ever, into the joined store under <output root>/feedback/<name>. Ids that are not in the log "
                    "are counted and kept to ingest again; a malformed row stops the ingest, named by line.")
    ingest.add_argument("file", metavar="FILE", help="the feedback file (.csv or .jsonl)")
    _add_config(ingest)
    _flag(ingest, "requests", help="request log directory (default: monitoring.request_log_dir, else "
                                   "<output root>/request_log)")
    ingest.set_defaults(handler=_feedback_ingest)


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="data tools", description="Data tools.")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    simulate = data_commands.add_parser(
        "simulate", help="write a new span from the data with controlled shifts",
        description="Write a new span (the next one under data.span_pattern, or --output) from the config's "
                    "data with controlled shifts; the same seed gives the same file byte for byte. Shifts apply "
                    "in this order: label threshold, scale, offset, share moves, new values, missing values.")
    _add_config(simulate)
    _flag(simulate, "source", help="CSV file or directory to start from (default: the config's data, newest span)")
    _flag(simulate, "output", help="CSV file to write (default: the next span under data.span_pattern)")
    _flag(simulate, "span", type=int, help="span number to write (default: the newest plus one)")
    _flag(simulate, "seed", type=int, default=0, help="random seed (default 0)")
    _flag(simulate, "rows", type=int, help="draw this many rows with replacement (default: every source row once)")
    _flag(simulate, "scale", action="append", default=[], metavar="FEATURE=FACTOR[@SHARE]",
          help="multiply a numeric feature, in SHARE of the rows (e.g. trip_miles=40@0.5)")
    _flag(simulate, "offset", action="append", default=[], metavar="FEATURE=DELTA[@SHARE]",
          help="add to a numeric feature, in SHARE of the rows")
    _flag(simulate, "move-share", action="append", default=[], metavar="FEATURE=VALUE:POINTS",
          help="move a value's share by POINTS percentage points (e.g. payment_type=Cash:+5)")
    _flag(simulate, "new-category", action="append", default=[], metavar="FEATURE=VALUE:SHARE",
          help="a new value in SHARE of the rows (e.g. payment_type=Bitcoin:0.05)")
    _flag(simulate, "missing", action="append", default=[], metavar="FEATURE=SHARE",
          help="raise a feature's missing values to SHARE of the rows")
    _flag(simulate, "label-threshold", type=float,
          help="the label rule's threshold becomes this (concept drift: the label column is rewritten)")
    simulate.set_defaults(handler=_simulate)


# Commands with their own parsers; `edge` imports the LiteRT runtime only, never TensorFlow.
DELEGATED = {
    "serve": ("serving.server", "TF Serving-compatible model server: tfxline serve --help"),
    "release": ("monitoring.release_compare", "canary, promote, rollback by version labels, and the A/B decision: "
                                              "tfxline release --help"),
    "edge": ("serving.edge.cli", "edge device commands (LiteRT only): tfxline edge --help"),
}


def _add_beam_profile(parser) -> None:
    parser.add_argument("--beam-profile", "--beam_profile", dest="beam_profile",
                        help="the Beam profile to run on (default: the config's beam.profile)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfxline", description="TFX pipeline, serving and edge runtime.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the pipeline locally (Beam DirectRunner, SQLite MLMD)",
                              description="Run every component locally and print a summary.")
    _add_config(run)
    _add_beam_profile(run)
    run.set_defaults(handler=_run)

    compile_ = commands.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines (V2 spec YAML)",
        description="Write the Kubeflow Pipelines spec (schema 2.1) for the config's target; --check also checks it "
                    "(schema, images, commands, edges, parameters, paths, the target's rules) before writing.")
    _add_config(compile_)
    compile_.add_argument("--output", default=DEFAULT_SPEC, help=f"YAML file to write (default {DEFAULT_SPEC})")
    _add_target(compile_)
    compile_.add_argument("--check", action="store_true", help="check the spec; write it only if it passes")
    compile_.add_argument("--spec", help="check this spec file instead of compiling (implies --check)")
    compile_.set_defaults(handler=_compile)

    submit_ = commands.add_parser(
        "submit", help="upload the compiled spec to Kubeflow Pipelines and start a run",
        description="Check the spec, upload it as a version of the config's pipeline and start a run (kfp.Client).")
    _add_config(submit_)
    submit_.add_argument("--spec", default=DEFAULT_SPEC, help=f"the compiled spec (default {DEFAULT_SPEC})")
    _add_target(submit_)
    submit_.add_argument("--endpoint", help="the KFP API (default: kubeflow.endpoint)")
    submit_.add_argument("--experiment", help="experiment of the run (default: kubeflow.experiment)")
    submit_.add_argument("--namespace",
                         help="profile namespace of a multi-user deployment (default: kubeflow.namespace)")
    submit_.add_argument("--token-env", "--token_env", dest="token_env",
                         help="environment variable with a bearer token (default: kubeflow.token_env)")
    submit_.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                         help="a run-time parameter, e.g. train_epochs=10 (repeatable)")
    submit_.add_argument("--run-name", "--run_name", dest="run_name", help="the run's name (default: name and time)")
    submit_.set_defaults(handler=_submit)

    dry_run = commands.add_parser(
        "dry-run", help="run the compiled spec here, task by task, as Kubeflow Pipelines runs it",
        description="Check the spec, then run every task as its pod would (a process with the container's command "
                    "and arguments), with a local directory standing in for the bucket: gs://B/P is STORE/gcs/B/P.")
    _add_config(dry_run)
    dry_run.add_argument("--spec", default=DEFAULT_SPEC, help=f"the compiled spec (default {DEFAULT_SPEC})")
    dry_run.add_argument("--store", required=True, help="the directory standing in for the object stores")
    dry_run.add_argument("--seed", action="store_true",
                         help="copy the config's CSV files and curated schema to kubeflow.data_path and schema_path "
                              "in the store where they are missing")
    _add_target(dry_run)
    dry_run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                         help="a run-time parameter, e.g. train_epochs=1 (repeatable)")
    dry_run.set_defaults(handler=_dry_run)

    schema = commands.add_parser("schema", help="schema tools", description="Schema tools.")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True, metavar="SUBCOMMAND")
    draft = schema_commands.add_parser("draft", help="infer and curate a schema from the config's data",
                                       description="Infer a schema with TFDV and add tfxline's curation.")
    _add_config(draft)
    draft.add_argument("--output", required=True, help="schema.pbtxt to write")
    draft.set_defaults(handler=_schema_draft)
    _add_monitor(commands)
    _add_feedback(commands)
    lineage = commands.add_parser(
        "lineage", help="where a pushed model came from: data, code, config, evaluation, push and releases",
        description="Print the chain of a pushed version from ML Metadata: data span and its files' fingerprint, "
                    "statistics, schema, anomalies, drift verdict, transform graph, trainer code version, config "
                    "fingerprint, evaluation, blessing, push and TFLite export, and its release events.")
    lineage.add_argument("version", nargs="?", metavar="VERSION",
                         help="the pushed version (default: the stable label's, else the newest push)")
    _add_config(lineage)
    _flag(lineage, "json", help="also write the chain as JSON to this file")
    lineage.set_defaults(handler=_lineage)
    _add_data(commands)

    score = commands.add_parser(
        "score", help="batch scoring: CSV, TFRecord or request-log files with a pushed version, on Beam",
        description="Score every row of INPUT with a pushed version (default: the one labelled stable) through "
                    "Beam's RunInference, on the config's Beam profile (`beam.profile`, or --beam-profile). Writes, "
                    "per row, the id "
                    "columns (or the source file and row number), the scores and the model version; rows that "
                    "do not fit the model's raw features go to rejects-*.jsonl with the reason.")
    score.add_argument("input", metavar="INPUT",
                       help="a CSV file with a header, a directory or glob of CSV or TFRecord (tf.Example) files, "
                            "or a request log directory")
    score.add_argument("--output", required=True, help="a new or empty directory for scores-*, rejects-* and "
                                                       "summary.json")
    score.add_argument("--version", type=int, help="the version to score with (default: the stable label's)")
    score.add_argument("--serving-dir", "--serving_dir", help="the serving directory (default: the config's)")
    score.add_argument("--model-name", "--model_name", help="the model (default: the config's name)")
    score.add_argument("--id-columns", "--id_columns",
                       help="comma-separated input columns copied to each output row (default: scoring.id_columns; "
                            "none: the source file and row number)")
    score.add_argument("--format", choices=["csv", "tfrecord", "parquet"], default="csv", help="the scores' format")
    score.add_argument("--batch-size", "--batch_size", type=int, help="rows per model call (default: "
                                                                       "scoring.batch_size)")
    score.add_argument("--max-reject-share", "--max_reject_share", type=float,
                       help="fail when more rows than this share are rejected (default: scoring.max_reject_share)")
    _add_config(score)
    _add_beam_profile(score)
    score.set_defaults(handler=_score)

    stream = commands.add_parser(
        "stream", help="stream scoring: Pub/Sub messages with a pushed version, on a Beam streaming runner",
        description="Score JSON messages from a Pub/Sub subscription as they arrive (batches of at most "
                    "scoring.batch_size within the runner's bundles), on the config's Beam profile "
                    "(`beam.profile`, or --beam-profile; Dataflow for Pub/Sub). Publishes results, dead letters "
                    "(messages that cannot be "
                    "scored, with the reason) and statistics per scoring.window_seconds event-time window.")
    stream.add_argument("--subscription", required=True, help="projects/PROJECT/subscriptions/NAME to read")
    stream.add_argument("--output-topic", "--output_topic", required=True, help="projects/PROJECT/topics/NAME "
                                                                                 "of the results")
    stream.add_argument("--dead-letter-topic", "--dead_letter_topic", required=True,
                        help="topic of the messages that cannot be scored")
    stream.add_argument("--stats-topic", "--stats_topic", help="topic of the windowed statistics")
    stream.add_argument("--version", type=int, help="the version to score with (default: the stable label's)")
    stream.add_argument("--serving-dir", "--serving_dir", help="the serving directory (default: the config's)")
    stream.add_argument("--model-name", "--model_name", help="the model (default: the config's name)")
    stream.add_argument("--id-field", "--id_field", default="id", help="message field echoed back, not a feature")
    _add_config(stream)
    _add_beam_profile(stream)
    stream.set_defaults(handler=_stream)

    review = commands.add_parser(
        "review", help="a self-contained HTML review of a run, with its JSON and model card",
        description="Write review.html (self-contained), review.json, model_card.md and model_card.json for a "
                    "pipeline run from its artifacts (no Beam, no model loaded) and print the HTML's path.")
    _add_config(review)
    review.add_argument("--run", metavar="ID",
                        help="the pipeline run to review: its id in ML Metadata (a local run's start time, "
                             "e.g. 2026-12-03T14:32:28.557516, or a unique prefix of it; see --list-runs); "
                             "default the latest")
    review.add_argument("--list-runs", "--list_runs", action="store_true", help="list the runs' ids and exit")
    review.add_argument("--output", metavar="DIR",
                        help="directory to write into (default <output root>/review/<name>/<run id>)")
    review.add_argument("--strict", action="store_true",
                        help="fail while a human part of the model card is still a placeholder")
    review.set_defaults(handler=_review)

    for name, (_, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in argv
    command = " ".join(["tfxline", *argv[:1]])
    try:
        if argv[:1] and argv[0] in DELEGATED:
            import importlib

            if argv[0] == "release":  # `release compare` reads the request log with TensorFlow
                from pipeline.local import prepare_environment

                prepare_environment(verbose)

            return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
        args = build_parser().parse_args(argv)
        from pipeline.local import prepare_environment

        prepare_environment(args.verbose)
        return args.handler(args)
    except ConfigError as error:
        print(f"tfxline: config error: {error}", file=sys.stderr)
        return 2
    except COMMAND_ERRORS as error:
        if verbose:
            raise
        print(f"{command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # TFX's, KFP's, TFDV's own errors: one line, the traceback on request
        if verbose:
            raise
        print(f"{command}: {one_line(error)} (run again with --verbose for the traceback)", file=sys.stderr)
        return 1


def one_line(error: BaseException) -> str:
    """The error's type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def console_main() -> None:
    """The installed `tfxline` command (and `python -m pipeline.cli`)."""
    speedups.exit_process(main())


if __name__ == "__main__":
    console_main()

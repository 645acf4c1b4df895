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
    run.add_argument("--beam-profile", "--beam_profile", dest="beam_profile",
                     help="the Beam profile to run on (default: the config's beam.profile)")
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

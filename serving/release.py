"""`tfxline release`: move the `stable` and `canary` labels in models.config.

Every change rewrites models.config (container paths) and models.local.config (the serving
directory's own paths) atomically, under the serving directory's release lock, so real TF
Serving, which re-reads its config every --model_config_file_poll_wait_seconds, and `tfxline
serve` both follow. release_history.json records each change and the stable versions a rollback
walks back through (serving/release_state.py). Works on local paths and URIs (serving/layout.py)."""
import argparse
import sys
from typing import Callable, List, Optional

from google.protobuf import text_format

from serving import command_flags, layout, model_config, release_state
from serving.release_state import CANARY, STABLE, Release


class ReleaseError(Exception):
    def __init__(self, problem: str, remedy: str):
        super().__init__(f"{problem}; {remedy}")


def _set_canary(version: int):
    def transition(release: Release) -> None:
        if version not in release.versions_on_disk:
            raise ReleaseError(f"version {version} is not a directory under {release.model_name}/"
                               + (" with a complete SavedModel" if version in release.incomplete_versions else ""),
                               f"pick one of: {_listing(release.versions_on_disk)}")
        if STABLE not in release.labels:
            raise ReleaseError("there is no stable version yet", "push a model first (tfxline run)")
        if release.labels[STABLE] == version:
            raise ReleaseError(f"version {version} is already stable", "pick a newer version for the canary")
        if release.labels.get(CANARY) != version:
            release.labels[CANARY] = version
            release.record("canary", version)
    return transition


def _promote(release: Release, decision: Optional[dict] = None) -> None:
    if CANARY not in release.labels:
        raise ReleaseError("there is no canary to promote", "set one with `tfxline release canary VERSION`")
    version = release.labels.pop(CANARY)
    release.labels[STABLE] = version
    release.stable_versions.append(version)
    release.record("promote", version, decision)


def _rollback(release: Release) -> None:
    target = release.rollback_target()
    if target is None:
        raise ReleaseError("nothing to roll back to: release_history.json has no earlier stable version",
                           "point a canary at a version and promote it instead")
    if target not in release.versions_on_disk:
        raise ReleaseError(f"the previous stable version {target} is no longer on disk",
                           f"promote one of: {_listing(release.versions_on_disk)}")
    while release.stable_versions and release.stable_versions[-1] != target:
        release.stable_versions.pop()
    release.labels[STABLE] = target
    if release.labels.get(CANARY) == target:
        del release.labels[CANARY]
    release.record("rollback", target)


def _clear_canary(release: Release, decision: Optional[dict] = None) -> None:
    if CANARY not in release.labels:
        raise ReleaseError("there is no canary", "nothing to clear")
    release.record("clear-canary", release.labels.pop(CANARY), decision)


def apply_decision(serving_dir: str, model_name: str, promote: bool, canary: int, decision: dict) -> Release:
    """Promotes the canary (blue-green) or drops it, recording the decision's numbers in the history; the
    canary must still be `canary`, so a decision is never applied to a version that replaced it meanwhile."""
    def transition(release: Release) -> None:
        if release.labels.get(CANARY) != canary:
            raise ReleaseError(f"the canary is now {release.labels.get(CANARY, 'none')}, not {canary}",
                               "compare again")
        (_promote if promote else _clear_canary)(release, decision)
    return release_state.update_release(serving_dir, model_name, transition)


def _listing(versions: List[int]) -> str:
    return ", ".join(map(str, versions)) or "none"


def _require_model(args):
    path = layout.join(args.serving_dir, layout.MODELS_CONFIG)
    if not layout.exists(path):
        raise ReleaseError(f"no {layout.MODELS_CONFIG} in {args.serving_dir}",
                           "push a model first (tfxline run) or pass --serving-dir or --config")
    entry = model_config.find_model(model_config.read_model_server_config(path), args.model_name)
    if entry is None:
        raise ReleaseError(f"model '{args.model_name}' is not in {path}", "check --model-name")
    return entry


def _status(args) -> int:
    entry = _require_model(args)
    release = release_state.read_release(args.serving_dir, args.model_name)
    policy = entry.model_version_policy
    loaded = (_listing(list(policy.specific.versions)) if policy.HasField("specific")
              else text_format.MessageToString(policy, as_one_line=True) or "the latest")
    print(f"{args.model_name} in {layout.join(args.serving_dir, layout.MODELS_CONFIG)}")
    print(f"  stable    {release.labels.get(STABLE, '-')}")
    print(f"  canary    {release.labels.get(CANARY, '-')}")
    for label in sorted(set(release.labels) - {STABLE, CANARY}):
        print(f"  {label:<9} {release.labels[label]}")
    print(f"  loaded    {loaded}")
    print(f"  on disk   {_listing(release.versions_on_disk)}")
    if release.incomplete_versions:  # no saved_model.pb yet: being published, or an interrupted publish
        print(f"  incomplete {_listing(release.incomplete_versions)}")
    print(f"  rollback  {release.rollback_target() or '-'}")
    print("history (newest last):" if release.events else "history: none")
    for event in release.events:
        labels = " ".join(f"{name}={version}" for name, version in event["labels"].items())
        print(f"  {event['time']}  {event['action']:<12} {event['version']:<12} {labels}")
    return 0


def _change(transition):
    def handler(args) -> int:
        _require_model(args)
        before = release_state.read_release(args.serving_dir, args.model_name)
        after = release_state.update_release(args.serving_dir, args.model_name, transition)
        if after.events == before.events:
            print(f"tfxline release: no change (stable {after.labels.get(STABLE, '-')}, "
                  f"canary {after.labels.get(CANARY, '-')})")
            return 0
        print(f"tfxline release: {after.events[-1]['action']} {after.events[-1]['version']}: "
              f"stable {after.labels.get(STABLE, '-')}, canary {after.labels.get(CANARY, '-')}; "
              f"{layout.MODELS_CONFIG} and {layout.LOCAL_MODELS_CONFIG} rewritten")
        return 0
    return handler


def build_parser(extend: Optional[Callable] = None) -> argparse.ArgumentParser:
    """`extend(commands, common)` adds subcommands that live in a higher layer (`release compare`)."""
    common = argparse.ArgumentParser(add_help=False)
    command_flags.add(common, "serving")

    parser = argparse.ArgumentParser(
        prog="tfxline release", description="Canary, blue-green promotion and rollback by TF Serving version labels.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", parents=[common], help="labels, versions on disk and the history",
                                 description="Show the labels, loaded versions, versions on disk and history.")
    status.set_defaults(handler=_status)
    canary = commands.add_parser("canary", parents=[common], help="point `canary` at a version on disk",
                                 description="Point the canary label at VERSION, a version directory on disk.")
    canary.add_argument("version", type=int, metavar="VERSION")
    canary.set_defaults(handler=lambda args: _change(_set_canary(args.version))(args))
    promote = commands.add_parser("promote", parents=[common], help="move `stable` to the canary version",
                                  description="Blue-green: move stable to the canary version and drop the canary "
                                              "label; the old stable stays loaded for a rollback.")
    promote.set_defaults(handler=_change(_promote))
    rollback = commands.add_parser("rollback", parents=[common], help="move `stable` back to the previous stable",
                                   description="Move stable back to the version that was stable before it.")
    rollback.set_defaults(handler=_change(_rollback))
    clear = commands.add_parser("clear-canary", parents=[common], help="drop the canary label",
                                description="Drop the canary label; all labelled traffic goes to stable.")
    clear.set_defaults(handler=_change(_clear_canary))
    if extend is not None:
        extend(commands, common)
    return parser


def main(argv: Optional[List[str]] = None, parser: Optional[argparse.ArgumentParser] = None) -> int:
    args = (parser or build_parser()).parse_args(sys.argv[1:] if argv is None else argv)
    from config import ConfigError

    try:
        command_flags.fill_defaults(args, "serving")
    except ConfigError as error:
        print(f"tfxline release: config error: {error}", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except ReleaseError as error:
        print(f"tfxline release: {error}", file=sys.stderr)
    except (ValueError, OSError) as error:
        print(f"tfxline release: {error}; fix or restore the file, then run the command again", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

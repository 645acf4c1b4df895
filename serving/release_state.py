"""Release state of a serving directory: each model's `stable` and `canary` labels and version
policy in models.config (and models.local.config), and release_history.json, which records every
label change and the stable versions a rollback walks back through. A push and every
`tfxline release` command change them under the serving directory's release lock."""
import dataclasses
import json
import time
from typing import Callable, Dict, List, Optional

from serving import layout, model_config

STABLE, CANARY = "stable", "canary"


@dataclasses.dataclass
class Release:
    """One model's labels and history; transitions change it, `update_release` writes it."""
    model_name: str
    labels: Dict[str, int]
    stable_versions: List[int]  # every version that became stable, oldest first
    events: List[dict]
    versions_on_disk: List[int]  # complete versions only: a label may point at these
    incomplete_versions: List[int] = dataclasses.field(default_factory=list)

    def rollback_target(self) -> Optional[int]:
        stable = self.labels.get(STABLE)
        earlier = [version for version in self.stable_versions if version != stable]
        return earlier[-1] if earlier else None

    def record(self, action: str, version: int, decision: Optional[dict] = None) -> None:
        """`decision`: the numbers an automatic decision was taken on (`tfxline release compare --apply`)."""
        event = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "action": action,
                 "version": version, "labels": dict(sorted(self.labels.items()))}
        if decision is not None:
            event["decision"] = decision
        self.events.append(event)


def read_release_history(serving_dir: str) -> dict:
    path = layout.join(serving_dir, layout.RELEASE_HISTORY)
    if not layout.exists(path):
        return {}
    try:
        return json.loads(layout.read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}")


def read_release(serving_dir: str, model_name: str) -> Release:
    config = model_config.read_or_empty(layout.join(serving_dir, layout.MODELS_CONFIG))
    return _release_from(config, serving_dir, model_name)


def _release_from(config, serving_dir: str, model_name: str) -> Release:
    entry = model_config.find_model(config, model_name)
    history = read_release_history(serving_dir).get(model_name, {})
    base = layout.join(serving_dir, model_name)
    complete = layout.saved_model_versions(base)
    return Release(model_name, dict(entry.version_labels) if entry else {},
                   list(history.get("stable_versions", [])), list(history.get("events", [])), complete,
                   [version for version in layout.versions(base) if version not in complete])


def update_release(serving_dir: str, model_name: str, transition: Callable[[Release], None]) -> Release:
    """Applies `transition` to the model's release state and rewrites the files that changed."""
    with layout.release_lock(serving_dir):
        models_config = layout.join(serving_dir, layout.MODELS_CONFIG)
        config = model_config.read_or_empty(models_config)
        release = _release_from(config, serving_dir, model_name)
        events_before = len(release.events)
        transition(release)
        changed = len(release.events) != events_before
        entry = model_config.find_model(config, model_name)
        if changed or entry is None:
            _set_labels_and_policy(entry or model_config.add_model(config, model_name), release)
        model_config.write_if_changed(models_config, config)
        model_config.write_if_changed(layout.join(serving_dir, layout.LOCAL_MODELS_CONFIG),
                                      model_config.localized(config, serving_dir))
        if changed:
            history = read_release_history(serving_dir)
            history[model_name] = {"stable_versions": release.stable_versions, "events": release.events}
            layout.write_json(layout.join(serving_dir, layout.RELEASE_HISTORY), history)
    return release


def _set_labels_and_policy(entry, release: Release) -> None:
    entry.ClearField("version_labels")
    entry.version_labels.update(release.labels)
    # TF Serving moves a label only onto a loaded version, so the policy loads every labelled
    # version and the rollback target: a rollback then takes effect at the next config poll.
    loaded = (set(release.labels.values()) | {release.rollback_target()}) - {None}
    entry.model_version_policy.specific.ClearField("versions")
    entry.model_version_policy.specific.versions.extend(sorted(loaded))


def write_serving_configs(serving_dir: str, model_name: str, version: int) -> Release:
    """After `<serving_dir>/<model_name>/<version>` is complete: the first version becomes
    `stable`, later ones `canary`, and the version policy loads them."""
    with layout.release_lock(serving_dir):
        # Operators tune these two for their hardware; a push writes them only when they are missing.
        for name, text in ((layout.MONITORING_CONFIG, model_config.monitoring_config_text()),
                           (layout.BATCHING_PARAMETERS, model_config.batching_parameters_text())):
            if not layout.exists(layout.join(serving_dir, name)):
                layout.write_text(layout.join(serving_dir, name), text)
        return update_release(serving_dir, model_name, lambda release: _push(release, version))


def push(model_dir: str, base_directory: str, now: float) -> str:
    """What the Pusher does, under one hold of the release lock: choose the next version, publish
    the SavedModel there, then name it in the configs (so TF Serving's `specific` policy loads it
    only once it is complete). Returns the version."""
    serving_dir, model_name = layout.split_base(base_directory)
    with layout.release_lock(serving_dir):
        version = layout.publish_saved_model(model_dir, base_directory, now)
        write_serving_configs(serving_dir, model_name, int(version))
    return version


def _push(release: Release, version: int) -> None:
    already_pushed = any(event["action"] == "push" and event["version"] == version for event in release.events)
    # A re-run that re-publishes the same model (even one rolled back from) changes nothing.
    if already_pushed or version in release.labels.values():
        return
    if STABLE in release.labels:
        release.labels[CANARY] = version
    else:
        release.labels[STABLE] = version
        release.stable_versions.append(version)
    release.record("push", version)

"""`tfxline lineage [VERSION]`: where a pushed model came from, from ML Metadata (metadata/lineage.py's
`model_chain`: data span and its files' fingerprint, statistics, schema, anomalies and their gate, drift
verdict, transform graph, trainer code version and config fingerprint, evaluation, blessing, push, TFLite
export), with the release events of the serving directory's history (serving/release_state.py)."""
import json
import os
from typing import Optional

from config import PipelineConfig
from metadata.errors import MetadataError


def _version(config: PipelineConfig, store, version: Optional[str]) -> str:
    from metadata import lineage
    from serving import release_state

    if version is not None:
        return version
    stable = release_state.read_release(config.output.serving, config.name).labels.get(release_state.STABLE)
    if stable is not None:
        return str(stable)
    pushed = [a for a in lineage.artifacts_of_type(store, config.name, "PushedModel")
              if "pushed_version" in a.custom_properties and a.custom_properties["pushed_version"].string_value]
    if not pushed:
        raise MetadataError(f"pipeline '{config.name}' has pushed no model yet; run `tfxline run` first")
    return pushed[-1].custom_properties["pushed_version"].string_value


def collect(config: PipelineConfig, version: Optional[str] = None) -> dict:
    from metadata import lineage, store
    from serving import release_state

    if not store.has_store(config):
        raise MetadataError(f"no ML Metadata at {store.sqlite_path(config)}; run `tfxline run` with this config "
                            f"first, or pass the --config of the run that pushed the model")
    mlmd = store.open_store(config)
    version = _version(config, mlmd, version)
    links = lineage.model_chain(mlmd, config.name, version)
    if links is None:
        raise MetadataError(f"ML Metadata has no push of version {version} by pipeline '{config.name}'; "
                            f"`tfxline release status` lists the versions on disk")
    try:
        events = release_state.read_release(config.output.serving, config.name).events
    except ValueError:
        events = []
    releases = [e for e in events if e["version"] == int(version) or int(version) in e["labels"].values()]
    return {"model": config.name, "version": version,
            "chain": [{"step": link.step, "artifact_id": link.artifact_id, "type": link.artifact_type,
                       "uri": link.uri, "producer": link.producer, **link.details} for link in links],
            "releases": releases}


_SHOWN = {"span": ("span", "input_base", "input_fingerprint"), "gate": ("passed", "anomalies"),
          "drift": ("has_baseline", "drifted", "blocked"), "model": ("code_version", "config_fingerprint"),
          "blessing": ("blessed",), "push": ("pushed_destination",), "tflite": ("edge_path",)}


def format_text(found: dict) -> str:
    lines = [f"tfxline lineage: {found['model']} version {found['version']}"]
    for link in found["chain"]:
        details = ", ".join(f"{name} {link[name]}" for name in _SHOWN.get(link["step"], ()) if name in link)
        lines.append(f"  {link['step']:<11} {link['type']} #{link['artifact_id']} by {link['producer'] or '-'}"
                     f"{'; ' + details if details else ''}")
        lines.append(f"  {'':<11} {link['uri']}")
    lines.append("releases (newest last):" if found["releases"] else "releases: none recorded")
    for event in found["releases"]:
        labels = " ".join(f"{name}={value}" for name, value in event["labels"].items())
        decided = f"  ({event['decision']['decision']}, p {event['decision']['always_valid_p']:.3g})" \
            if "decision" in event else ""
        lines.append(f"  {event['time']}  {event['action']:<12} {event['version']:<12} {labels}{decided}")
    return "\n".join(lines)


def write_json(found: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(found, handle, indent=2, sort_keys=True)


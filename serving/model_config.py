"""TF Serving's config files: read, write and kept up to date at every push and label move.

Layout of the serving directory (the parent of `<model>/<version>/`), mounted at /models in a
TF Serving container:
  models.config            ModelServerConfig with container paths (/models/<model>)
  models.local.config      the same with absolute local paths, for `tfxline serve`
  monitoring.config        Prometheus exposition on the REST port
  batching_parameters.txt  BatchingParameters for --enable_batching
  release_history.json     every label change, and the stable versions a rollback walks back to

Only protobuf's text format is used (no TensorFlow import), so `tfxline release` starts instantly.
"""
import ast
import contextlib
import dataclasses
import fcntl
import json
import os
import re
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.registry import versions_on_disk

MODELS_CONFIG = "models.config"
LOCAL_MODELS_CONFIG = "models.local.config"
MONITORING_CONFIG = "monitoring.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
RELEASE_HISTORY = "release_history.json"
CONTAINER_MODELS_DIR = "/models"
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
STABLE, CANARY = "stable", "canary"

_CONFIG_HEADER = ("# Written by tfxline at each push and by `tfxline release`; servers re-read it every\n"
                  "# --model_config_file_poll_wait_seconds. Hand edits are read back, comments are not kept.\n")


# ---- ModelServerConfig -------------------------------------------------------------------------

def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"Error parsing text-format tensorflow.serving.ModelServerConfig in {path}: {error}")


def write_model_server_config(config: model_server_config_pb2.ModelServerConfig, path: str) -> None:
    _write_atomically(path, _CONFIG_HEADER + text_format.MessageToString(config))


def _write_atomically(path: str, text: str) -> None:
    """A polling server reads either the old file or the new one, never a partial write."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the file from a non-root server
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


# ---- The small text format of MonitoringConfig and BatchingParameters ---------------------------
# Neither proto ships in a pip package without TensorFlow, so their text format is parsed here:
# `name: value`, `name value`, `name [:] { ... }`, `name: [v1, v2]`, commas or semicolons between
# fields, `#` comments. A message parses to a list of (name, value), a `[...]` list to a tuple.

_TOKEN = re.compile(r"""(?P<space>\s+|\#[^\n]*)
                      |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
                      |(?P<symbol>[{}\[\]:,;])
                      |(?P<word>[^\s{}\[\]:,;"'\#]+)""", re.VERBOSE)


@dataclasses.dataclass
class _Scalar:
    text: str
    quoted: bool


def _tokens(text: str) -> List[Tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"unexpected {text[position]!r} at offset {position}")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
        position = match.end()
    return tokens


def _parse_fields(text: str) -> list:
    fields, _ = _parse_message(_tokens(text), 0, closing=None)
    return fields


def _parse_message(tokens, position, closing):
    fields = []
    while position < len(tokens) and tokens[position] != ("symbol", closing):
        kind, name = tokens[position]
        if kind != "word":
            raise ValueError(f"expected a field name, got {name!r}")
        position += 1
        if position < len(tokens) and tokens[position] == ("symbol", ":"):
            position += 1
        if position >= len(tokens):
            raise ValueError(f"{name}: missing value")
        if tokens[position] == ("symbol", "{"):
            value, position = _parse_message(tokens, position + 1, closing="}")
        elif tokens[position] == ("symbol", "["):
            value, position = _parse_list(name, tokens, position + 1)
        else:
            value, position = _parse_scalar(name, tokens, position)
        fields.append((name, value))
        if position < len(tokens) and tokens[position] in (("symbol", ","), ("symbol", ";")):
            position += 1
    if closing is not None:
        if position >= len(tokens):
            raise ValueError(f"missing {closing!r}")
        position += 1
    return fields, position


def _parse_scalar(name, tokens, position):
    kind, text = tokens[position]
    if kind == "string":
        try:
            return _Scalar(ast.literal_eval(text), quoted=True), position + 1
        except SyntaxError as error:
            raise ValueError(f"{name}: bad escape in {text}: {error.msg}")
    if kind == "word":
        return _Scalar(text, quoted=False), position + 1
    raise ValueError(f"{name}: expected a value, got {text!r}")


def _parse_list(name, tokens, position):
    values = []
    while position < len(tokens) and tokens[position] != ("symbol", "]"):
        value, position = _parse_scalar(name, tokens, position)
        values.append(value)
        if position < len(tokens) and tokens[position] == ("symbol", ","):
            position += 1
    if position >= len(tokens):
        raise ValueError(f"{name}: missing ']'")
    return tuple(values), position + 1


def _describe(value) -> str:
    if isinstance(value, _Scalar):
        return repr(value.text) if value.quoted else value.text
    return "a list" if isinstance(value, tuple) else "a message"


def _as_int(name: str, value) -> int:
    if isinstance(value, _Scalar) and not value.quoted:
        with contextlib.suppress(ValueError):
            return int(value.text, 0)
    raise ValueError(f"{name}: expected an integer, got {_describe(value)}")


def _as_bool(name: str, value) -> bool:
    if isinstance(value, _Scalar) and not value.quoted:
        if value.text in ("true", "True", "t", "1"):
            return True
        if value.text in ("false", "False", "f", "0"):
            return False
    raise ValueError(f"{name}: expected true or false, got {_describe(value)}")


def _as_string(name: str, value) -> str:
    if isinstance(value, _Scalar) and value.quoted:
        return value.text
    raise ValueError(f"{name}: expected a quoted string, got {_describe(value)}")


def _as_message(name: str, value, known: Tuple[str, ...]) -> Dict[str, object]:
    if not isinstance(value, list):
        raise ValueError(f"{name}: expected a message {name} {{ ... }}, got {_describe(value)}")
    return _singular(value, name, known)


def _singular(fields: list, where: str, known: Tuple[str, ...]) -> Dict[str, object]:
    values = {}
    for name, value in fields:
        if name not in known:
            raise ValueError(f"unknown field '{name}' in {where}")
        if name in values:
            raise ValueError(f"{name} is given more than once in {where}")
        values[name] = value
    return values


def parse_monitoring_config(text: str) -> Tuple[bool, str]:
    """`prometheus_config { enable: true, path: "..." }` -> (enabled, metrics path)."""
    try:
        top = _singular(_parse_fields(text), "the monitoring config", ("prometheus_config",))
        prometheus = _as_message("prometheus_config", top.get("prometheus_config", []), ("enable", "path"))
        enabled = _as_bool("enable", prometheus["enable"]) if "enable" in prometheus else False
        path = _as_string("path", prometheus["path"]) if "path" in prometheus else ""
    except ValueError as error:
        raise ValueError(f"monitoring config: {error}")
    return enabled, path or DEFAULT_METRICS_PATH


def monitoring_config_text(path: str = DEFAULT_METRICS_PATH) -> str:
    return f"prometheus_config {{\n  enable: true\n  path: {json.dumps(path)}\n}}\n"


_INT64_WRAPPERS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                   "max_execution_batch_size")
_SINGULAR_BATCHING_FIELDS = _INT64_WRAPPERS + ("thread_pool_name", "enable_large_batch_splitting",
                                               "pad_variable_length_inputs")


def parse_batching_parameters(text: str) -> dict:
    """BatchingParameters text -> every field, with TF Serving's default where unset."""
    try:
        fields = _parse_fields(text)
        sizes = []
        for name, value in fields:
            if name == "allowed_batch_sizes":
                sizes.extend(_as_int(name, item) for item in (value if isinstance(value, tuple) else (value,)))
        given = _singular([field for field in fields if field[0] != "allowed_batch_sizes"],
                          "the batching parameters", _SINGULAR_BATCHING_FIELDS)

        def wrapped(name, convert, default):
            # Int64Value, StringValue and BoolValue fields are written `name { value: ... }`.
            if name not in given:
                return default
            inner = _as_message(name, given[name], ("value",))
            return convert(name, inner["value"]) if "value" in inner else default

        parameters = {
            "max_batch_size": wrapped("max_batch_size", _as_int, 1000),
            "batch_timeout_micros": wrapped("batch_timeout_micros", _as_int, 0),
            "max_enqueued_batches": wrapped("max_enqueued_batches", _as_int, 10),
            "num_batch_threads": wrapped("num_batch_threads", _as_int, os.cpu_count() or 1),
            "allowed_batch_sizes": sizes,
            "thread_pool_name": wrapped("thread_pool_name", _as_string, "batch_threads"),
            "enable_large_batch_splitting": wrapped("enable_large_batch_splitting", _as_bool, False),
            "pad_variable_length_inputs": ("pad_variable_length_inputs" in given and _as_bool(
                "pad_variable_length_inputs", given["pad_variable_length_inputs"])),
        }
        parameters["max_execution_batch_size"] = wrapped("max_execution_batch_size", _as_int,
                                                         parameters["max_batch_size"])
        _check_batching(parameters)
    except ValueError as error:
        raise ValueError(f"batching parameters: {error}")
    return parameters


def _check_batching(parameters: dict) -> None:
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads", "max_execution_batch_size"):
        if parameters[name] < 1:
            raise ValueError(f"{name} must be at least 1, got {parameters[name]}")
    if parameters["batch_timeout_micros"] < 0:
        raise ValueError(f"batch_timeout_micros must not be negative, got {parameters['batch_timeout_micros']}")
    sizes = parameters["allowed_batch_sizes"]
    if sizes:
        if sizes[0] < 1 or any(a >= b for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"allowed_batch_sizes must be positive and increasing, got {sizes}")
        # With splitting, batches are max_execution_batch_size at most (checked in serving/batching.py).
        if sizes[-1] != parameters["max_batch_size"] and not parameters["enable_large_batch_splitting"]:
            raise ValueError(f"allowed_batch_sizes must end with max_batch_size "
                             f"({parameters['max_batch_size']}), got {sizes}")


def batching_parameters_text(max_batch_size: int = 64, batch_timeout_micros: int = 1000,
                             max_enqueued_batches: int = 100, num_batch_threads: Optional[int] = None) -> str:
    """Defaults for a small tabular model on CPU: a 1 ms wait gathers concurrent requests without
    hurting p99; num_batch_threads is left out so the serving machine uses its own CPU count."""
    lines = [f"max_batch_size {{ value: {max_batch_size} }}",
             f"batch_timeout_micros {{ value: {batch_timeout_micros} }}",
             f"max_enqueued_batches {{ value: {max_enqueued_batches} }}"]
    if num_batch_threads is not None:
        lines.append(f"num_batch_threads {{ value: {num_batch_threads} }}")
    return "\n".join(lines) + "\n"


# ---- Labels, version policy and release history -------------------------------------------------

@dataclasses.dataclass
class Release:
    """One model's labels and history; transitions change it, `update_release` writes it."""
    model_name: str
    labels: Dict[str, int]
    stable_versions: List[int]  # every version that became stable, oldest first
    events: List[dict]
    versions_on_disk: List[int]

    def rollback_target(self) -> Optional[int]:
        stable = self.labels.get(STABLE)
        earlier = [version for version in self.stable_versions if version != stable]
        return earlier[-1] if earlier else None

    def record(self, action: str, version: int) -> None:
        self.events.append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "action": action,
                            "version": version, "labels": dict(sorted(self.labels.items()))})


def read_release_history(serving_dir: str) -> dict:
    path = os.path.join(serving_dir, RELEASE_HISTORY)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}")


def read_release(serving_dir: str, model_name: str) -> Release:
    return _release_from(_read_or_empty(os.path.join(serving_dir, MODELS_CONFIG)), serving_dir, model_name)


def _release_from(config, serving_dir: str, model_name: str) -> Release:
    entry = find_model(config, model_name)
    history = read_release_history(serving_dir).get(model_name, {})
    return Release(model_name, dict(entry.version_labels) if entry else {},
                   list(history.get("stable_versions", [])), list(history.get("events", [])),
                   versions_on_disk(os.path.join(serving_dir, model_name)))


def update_release(serving_dir: str, model_name: str, transition: Callable[[Release], None]) -> Release:
    """Applies `transition` to the model's release state and rewrites the files that changed."""
    with _locked(serving_dir):
        config = _read_or_empty(os.path.join(serving_dir, MODELS_CONFIG))
        release = _release_from(config, serving_dir, model_name)
        events_before = len(release.events)
        transition(release)
        changed = len(release.events) != events_before
        entry = find_model(config, model_name)
        if changed or entry is None:
            _set_labels_and_policy(entry or _add_model(config, model_name), release)
        _write_if_changed(os.path.join(serving_dir, MODELS_CONFIG), config)
        _write_if_changed(os.path.join(serving_dir, LOCAL_MODELS_CONFIG), _localized(config, serving_dir))
        if changed:
            history = read_release_history(serving_dir)
            history[model_name] = {"stable_versions": release.stable_versions, "events": release.events}
            _write_atomically(os.path.join(serving_dir, RELEASE_HISTORY), json.dumps(history, indent=2) + "\n")
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
    """Called by the Pusher after `<serving_dir>/<model_name>/<version>` is in place."""
    os.makedirs(serving_dir, exist_ok=True)
    # Operators tune these two for their hardware; a push writes them only when they are missing.
    for name, text in ((MONITORING_CONFIG, monitoring_config_text()), (BATCHING_PARAMETERS, batching_parameters_text())):
        if not os.path.exists(os.path.join(serving_dir, name)):
            _write_atomically(os.path.join(serving_dir, name), text)
    return update_release(serving_dir, model_name, lambda release: _push(release, version))


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


def _read_or_empty(path: str) -> model_server_config_pb2.ModelServerConfig:
    if not os.path.exists(path):
        return model_server_config_pb2.ModelServerConfig()
    return read_model_server_config(path)


def find_model(config, model_name: str):
    for entry in config.model_config_list.config:
        if entry.name == model_name:
            return entry
    return None


def _add_model(config, model_name: str):
    entry = config.model_config_list.config.add()
    entry.name = model_name
    entry.base_path = f"{CONTAINER_MODELS_DIR}/{model_name}"
    entry.model_platform = "tensorflow"
    return entry


def _localized(config, serving_dir: str):
    """The container config with /models/... paths pointing into the local serving directory."""
    local = model_server_config_pb2.ModelServerConfig()
    local.CopyFrom(config)
    root = os.path.abspath(serving_dir)
    for entry in local.model_config_list.config:
        if entry.base_path == CONTAINER_MODELS_DIR or entry.base_path.startswith(CONTAINER_MODELS_DIR + "/"):
            entry.base_path = root + entry.base_path[len(CONTAINER_MODELS_DIR):]
    return local


def _write_if_changed(path: str, config) -> None:
    """Unchanged files keep their mtime and any hand formatting; an unreadable one is replaced."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        if read_model_server_config(path) == config:
            return
    write_model_server_config(config, path)


@contextlib.contextmanager
def _locked(serving_dir: str):
    """A push and a `tfxline release` at the same moment would otherwise lose one of the changes."""
    os.makedirs(serving_dir, exist_ok=True)
    with open(os.path.join(serving_dir, ".release.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield

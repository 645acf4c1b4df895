"""TF Serving's config files in their text formats, parsed by protobuf's text_format into TF
Serving's own messages: ModelServerConfig (models.config, from the tensorflow-serving-api wheel),
MonitoringConfig and BatchingParameters (serving/protos/, TF Serving's definitions, which the
wheel does not ship). No TensorFlow import, so `tfxline release` starts fast."""
import os
import re
from typing import Optional, Tuple

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import layout
from serving.protos import monitoring_config_pb2, session_bundle_config_pb2

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"

_CONFIG_HEADER = ("# Written by tfxline at each push and by `tfxline release`; servers re-read it every\n"
                  "# --model_config_file_poll_wait_seconds. Hand edits are read back, comments are not kept.\n")


# ---- ModelServerConfig -------------------------------------------------------------------------

def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    text = layout.read_text(path)
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"Error parsing text-format tensorflow.serving.ModelServerConfig in {path}: {error}")


def write_model_server_config(config: model_server_config_pb2.ModelServerConfig, path: str) -> None:
    """Atomically: a polling server reads either the old file or the new one."""
    layout.write_text(path, _CONFIG_HEADER + text_format.MessageToString(config))


def read_or_empty(path: str) -> model_server_config_pb2.ModelServerConfig:
    if not layout.exists(path):
        return model_server_config_pb2.ModelServerConfig()
    return read_model_server_config(path)


def write_if_changed(path: str, config) -> None:
    """Unchanged files keep their mtime and any hand formatting; an unreadable one is replaced."""
    try:
        if read_model_server_config(path) == config:
            return
    except (OSError, ValueError):
        pass
    write_model_server_config(config, path)


def find_model(config, model_name: str):
    for entry in config.model_config_list.config:
        if entry.name == model_name:
            return entry
    return None


def add_model(config, model_name: str):
    entry = config.model_config_list.config.add()
    entry.name = model_name
    entry.base_path = f"{layout.CONTAINER_MODELS_DIR}/{model_name}"
    entry.model_platform = "tensorflow"
    return entry


def localized(config, serving_dir: str):
    """The container config with /models/... paths pointing into the serving directory itself
    (an absolute local path, or its URI)."""
    local = model_server_config_pb2.ModelServerConfig()
    local.CopyFrom(config)
    root = layout.absolute(serving_dir).rstrip("/")
    container = layout.CONTAINER_MODELS_DIR
    for entry in local.model_config_list.config:
        if entry.base_path == container or entry.base_path.startswith(container + "/"):
            entry.base_path = root + entry.base_path[len(container):]
    return local


# ---- MonitoringConfig and BatchingParameters ----------------------------------------------------

# Enough of the text format to say which field a text_format error is in: text_format names
# the field for unknown or repeated fields, but not for a bad value ("Couldn't parse integer").
_TOKENS = re.compile(r"""\#[^\n]*|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|[{}<>\[\]:,;]|[^\s{}<>\[\]:,;"'\#]+""")


def _field_at(text: str, line: int, column: int) -> Optional[str]:
    """The dotted path of the field whose name or value starts at (line, column), 1-based."""
    lines = text.split("\n")
    offset = sum(len(item) + 1 for item in lines[:line - 1]) + column - 1
    enclosing, current, after_colon, in_list = [], None, False, False
    for match in _TOKENS.finditer(text, 0, max(offset, 0)):
        token = match.group()
        if token.startswith("#"):
            continue
        if token == "[":
            in_list = True
        elif token == "]":
            in_list, after_colon = False, False
        elif in_list or token in (",", ";"):
            continue
        elif token in ("{", "<"):
            enclosing.append(current or "?")
            current, after_colon = None, False
        elif token in ("}", ">"):
            current = enclosing.pop() if enclosing else None
            after_colon = False
        elif token == ":":
            after_colon = True
        elif after_colon:
            after_colon = False  # a value; `current` stays the field it belongs to
        else:
            current = token
    path = enclosing + [current] if current else enclosing
    return ".".join(path) or None


def _parse(text: str, message, kind: str):
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as error:
        field = _field_at(text, error.GetLine(), error.GetColumn()) if error.GetLine() else None
        raise ValueError(f"{kind}: {field}: {error}" if field else f"{kind}: {error}") from None


def parse_monitoring_config(text: str) -> Tuple[bool, str]:
    """`prometheus_config { enable: true, path: "..." }` -> (enabled, metrics path)."""
    config = _parse(text, monitoring_config_pb2.MonitoringConfig(), "monitoring config")
    return config.prometheus_config.enable, config.prometheus_config.path or DEFAULT_METRICS_PATH


def monitoring_config_text(path: str = DEFAULT_METRICS_PATH) -> str:
    config = monitoring_config_pb2.MonitoringConfig()
    config.prometheus_config.enable = True
    config.prometheus_config.path = path
    return text_format.MessageToString(config)


def read_batching_parameters(text: str) -> session_bundle_config_pb2.BatchingParameters:
    return _parse(text, session_bundle_config_pb2.BatchingParameters(), "batching parameters")


def batching_parameters_dict(proto: session_bundle_config_pb2.BatchingParameters) -> dict:
    """Every field, with TF Serving's default where unset, checked as TF Serving checks them."""

    def wrapped(name, default):
        # Int64Value, StringValue and BoolValue fields: a set field counts even with no value inside.
        return getattr(proto, name).value if proto.HasField(name) else default

    parameters = {
        "max_batch_size": wrapped("max_batch_size", 1000),
        "batch_timeout_micros": wrapped("batch_timeout_micros", 0),
        "max_enqueued_batches": wrapped("max_enqueued_batches", 10),
        "num_batch_threads": wrapped("num_batch_threads", os.cpu_count() or 1),
        "allowed_batch_sizes": list(proto.allowed_batch_sizes),
        "thread_pool_name": wrapped("thread_pool_name", "batch_threads"),
        "enable_large_batch_splitting": wrapped("enable_large_batch_splitting", False),
        "pad_variable_length_inputs": proto.pad_variable_length_inputs,
    }
    parameters["max_execution_batch_size"] = wrapped("max_execution_batch_size", parameters["max_batch_size"])
    try:
        _check_batching(parameters)
    except ValueError as error:
        raise ValueError(f"batching parameters: {error}") from None
    return parameters


def parse_batching_parameters(text: str) -> dict:
    """BatchingParameters text -> every field, with TF Serving's default where unset."""
    return batching_parameters_dict(read_batching_parameters(text))


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
    proto = session_bundle_config_pb2.BatchingParameters()
    proto.max_batch_size.value = max_batch_size
    proto.batch_timeout_micros.value = batch_timeout_micros
    proto.max_enqueued_batches.value = max_enqueued_batches
    if num_batch_threads is not None:
        proto.num_batch_threads.value = num_batch_threads
    return text_format.MessageToString(proto)

"""The edge runtime: loads a published TFLite model with the LiteRT interpreter only (no
TensorFlow on the device), after checking every file against the manifest's sha256. The edge
directory's layout and the manifest are serving/layout.py's; a version without a manifest is
still being published and is not looked at."""
import dataclasses
import json
import logging
import threading
from typing import Dict, List, Optional

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from serving import layout

VARIANTS = layout.EDGE_VARIANTS
log = logging.getLogger("tfxline.edge")


class EdgeModelError(RuntimeError):
    """A version that cannot be served: missing, corrupt, or failing its manifest's hashes."""


class BadInput(ValueError):
    """A request the model cannot answer; the message names the feature and what to send."""


@dataclasses.dataclass
class EdgeModel:
    version: int
    manifest: dict
    _runner: object
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def inputs(self) -> List[dict]:
        return self.manifest["inputs"]

    @property
    def output(self) -> str:
        return self.manifest["outputs"][0]

    def predict(self, rows: List[Dict[str, object]]) -> np.ndarray:
        return self.run_columns(to_columns(rows, self.inputs))[self.output]

    def run_columns(self, columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        with self._lock:  # a LiteRT interpreter is not safe to call from two threads at once
            return {name: np.array(value) for name, value in self._runner(**columns).items()}


class _AllocatedRunner:
    """Calls one signature with set_tensor/invoke, resizing and re-allocating tensors only when
    the batch size changes. LiteRT's SignatureRunner re-allocates on every call, which is ~80 us
    of a ~100 us single-example call for the taxi model."""

    def __init__(self, interpreter: Interpreter, signature: str):
        runner = interpreter.get_signature_runner(signature)
        self._inputs = {name: d["index"] for name, d in runner.get_input_details().items()}
        self._outputs = {name: d["index"] for name, d in runner.get_output_details().items()}
        self._interpreter = interpreter
        self._batch_size = None

    def __call__(self, **columns: np.ndarray) -> Dict[str, np.ndarray]:
        batch_size = len(next(iter(columns.values())))
        if batch_size != self._batch_size:
            for index in self._inputs.values():
                self._interpreter.resize_tensor_input(index, [batch_size])
            self._interpreter.allocate_tensors()
            self._batch_size = batch_size
        for name, value in columns.items():
            self._interpreter.set_tensor(self._inputs[name], value)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(index) for name, index in self._outputs.items()}


def load(directory: str, variant: str = "float") -> EdgeModel:
    """Loads one version directory; raises EdgeModelError saying what is wrong with it."""
    try:
        manifest = layout.read_manifest(directory)
    except (OSError, ValueError) as error:
        raise EdgeModelError(f"{directory}: unreadable {layout.MANIFEST}: {error}") from None
    verified = {}
    for name, entry in manifest["files"].items():
        path = layout.join(directory, name)
        try:
            content = layout.read_bytes(path)
        except OSError:
            content = None
        if content is None or layout.sha256(content) != entry["sha256"]:
            raise EdgeModelError(f"{path}: sha256 does not match the manifest; refusing this version")
        verified[name] = content
    model_file = VARIANTS[variant]
    if model_file not in verified:
        raise EdgeModelError(f"{directory}: {model_file} is not in the manifest; refusing this version")
    try:
        # The bytes whose hash was just checked, not the file again: it may change in between.
        interpreter = Interpreter(model_content=verified[model_file])
        runner = _AllocatedRunner(interpreter, manifest["signature"])
    except (ValueError, RuntimeError) as error:
        raise EdgeModelError(f"{directory}: LiteRT cannot load {model_file}: {error}") from None
    return EdgeModel(int(manifest["version"]), manifest, runner)


def load_newest(base: str, variant: str = "float", current: Optional[EdgeModel] = None) -> Optional[EdgeModel]:
    """The newest version that loads; a corrupt newer one is logged and skipped, so `current`
    (or an older good version) keeps serving."""
    for version in reversed(layout.edge_versions(base)):
        if current is not None and version <= current.version:
            return current
        try:
            return load(layout.join(base, str(version)), variant)
        except EdgeModelError as error:
            log.error("%s", error)
    return current


def _convert(value, item):
    name, dtype = item["name"], item["dtype"]
    if value is None or value == "":
        value = item["default"]
    if dtype == "string":
        if isinstance(value, (dict, list)):
            raise BadInput(f"feature '{name}': expected a string, got {json.dumps(value)}")
        return value if isinstance(value, bytes) else str(value).encode()
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"feature '{name}': expected a number ({dtype}), got {json.dumps(value)}") from None
    if dtype == "int64":
        if number != int(number):
            raise BadInput(f"feature '{name}': expected an integer, got {json.dumps(value)}")
        return int(number)
    return number


def to_columns(rows: List[Dict[str, object]], inputs: List[dict]) -> Dict[str, np.ndarray]:
    """Rows of raw features to the model's input columns; a missing feature takes the value a
    tf.Example parse would give it, so the edge answers exactly as the SavedModel does."""
    if not rows:
        raise BadInput("no rows to score")
    known = {item["name"] for item in inputs}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadInput(f"row {index}: expected an object of feature values")
        unknown = sorted(set(row) - known)
        if unknown:
            raise BadInput(f"row {index}: unknown feature(s) {unknown}; the model takes {sorted(known)}")
    columns = {}
    for item in inputs:
        values = [_convert(row.get(item["name"]), item) for row in rows]
        columns[item["name"]] = np.array(values, dtype=object if item["dtype"] == "string" else item["dtype"])
    return columns

"""The edge runtime: loads a published TFLite model with the LiteRT interpreter only (no
TensorFlow on the device), after checking every file against the manifest's sha256."""
import dataclasses
import hashlib
import json
import logging
import os
import threading
from typing import Dict, List, Optional

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from serving.registry import versions_on_disk

MANIFEST = "manifest.json"
VARIANTS = {"float": "model.tflite", "quantized": "model_quant.tflite"}
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


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def load(directory: str, variant: str = "float") -> EdgeModel:
    """Loads one version directory; raises EdgeModelError saying what is wrong with it."""
    try:
        with open(os.path.join(directory, MANIFEST)) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as error:
        raise EdgeModelError(f"{directory}: unreadable {MANIFEST}: {error}") from None
    for name, entry in manifest.get("files", {}).items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path) or _sha256(path) != entry["sha256"]:
            raise EdgeModelError(f"{path}: sha256 does not match the manifest; refusing this version")
    try:
        interpreter = Interpreter(model_path=os.path.join(directory, VARIANTS[variant]))
        runner = _AllocatedRunner(interpreter, manifest["signature"])
    except (ValueError, RuntimeError) as error:
        raise EdgeModelError(f"{directory}: LiteRT cannot load {VARIANTS[variant]}: {error}") from None
    return EdgeModel(int(manifest["version"]), manifest, runner)


def load_newest(base: str, variant: str = "float", current: Optional[EdgeModel] = None) -> Optional[EdgeModel]:
    """The newest version that loads; a corrupt newer one is logged and skipped, so `current`
    (or an older good version) keeps serving."""
    for version in reversed(versions_on_disk(base)):
        if current is not None and version <= current.version:
            return current
        try:
            return load(os.path.join(base, str(version)), variant)
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

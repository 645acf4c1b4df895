"""The Evaluator's output as TFMA writes it (metrics, plots and the validation result, TFRecord files
of TFMA's protos), read the way `tfma.load_metrics`, `tfma.load_plots` and
`tfma.load_validation_result` read it.

With the `review-tfma-protos` speed-up (config/speedups.py), TFMA's proto modules are loaded from the
installed package without its `__init__`, which imports TensorFlow and Beam; the records are the same
files parsed by the same classes. Off, or when TFMA is already imported, TFMA is imported as usual."""
import glob
import importlib
import importlib.util
import os
import struct
import sys
import types
from typing import Iterator, List

from config import speedups

PACKAGE = "tensorflow_model_analysis"
PROTO_MODULES = ("config_pb2", "metrics_for_slice_pb2", "validation_result_pb2")
SPEEDUP = "review-tfma-protos"


def _load_protos_without_package() -> None:
    """Imports TFMA's proto modules under their own names while a bare stand-in for the package is in
    sys.modules; the stand-in is removed afterwards, so a later `import tensorflow_model_analysis`
    runs the real package, which finds these modules already loaded."""
    spec = importlib.util.find_spec(PACKAGE)
    root = list(spec.submodule_search_locations)[0]
    package = types.ModuleType(PACKAGE)
    package.__path__ = [root]
    proto = types.ModuleType(f"{PACKAGE}.proto")
    proto.__path__ = [os.path.join(root, "proto")]
    sys.modules[PACKAGE], sys.modules[f"{PACKAGE}.proto"] = package, proto
    try:
        for name in PROTO_MODULES:
            importlib.import_module(f"{PACKAGE}.proto.{name}")
    finally:
        del sys.modules[PACKAGE], sys.modules[f"{PACKAGE}.proto"]


def protos() -> types.SimpleNamespace:
    """TFMA's proto modules: config_pb2, metrics_for_slice_pb2, validation_result_pb2."""
    names = [f"{PACKAGE}.proto.{name}" for name in PROTO_MODULES]
    if not all(name in sys.modules for name in names):
        if PACKAGE not in sys.modules and speedups.applies(SPEEDUP):
            _load_protos_without_package()
        else:
            importlib.import_module(PACKAGE)
    return types.SimpleNamespace(**{name.rsplit(".", 1)[1]: sys.modules[name] for name in names})


def tfrecords(paths: List[str]) -> Iterator[bytes]:
    """The records of uncompressed TFRecord files (length, length CRC, data, data CRC)."""
    for path in paths:
        with open(path, "rb") as handle:
            while True:
                header = handle.read(12)
                if not header:
                    break
                if len(header) < 12:
                    raise ValueError(f"{path}: truncated TFRecord header")
                (length,) = struct.unpack("<Q", header[:8])
                data = handle.read(length)
                if len(data) < length or len(handle.read(4)) < 4:
                    raise ValueError(f"{path}: truncated TFRecord")
                yield data


def _files(evaluation_uri: str, key: str) -> List[str]:
    return sorted(glob.glob(os.path.join(evaluation_uri, f"{key}*.tfrecord")))


def load_metrics(evaluation_uri: str) -> list:
    parse = protos().metrics_for_slice_pb2.MetricsForSlice.FromString
    return [parse(record) for record in tfrecords(_files(evaluation_uri, "metrics"))]


def load_plots(evaluation_uri: str) -> list:
    parse = protos().metrics_for_slice_pb2.PlotsForSlice.FromString
    return [parse(record) for record in tfrecords(_files(evaluation_uri, "plots"))]


def load_validation_result(evaluation_uri: str):
    records = list(tfrecords(_files(evaluation_uri, "validations")))
    if len(records) != 1:
        raise ValueError(f"{evaluation_uri}: expected one TFMA validation result, found {len(records)}")
    return protos().validation_result_pb2.ValidationResult.FromString(records[0])

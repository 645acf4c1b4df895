"""What a loaded model version offers the servers, independent of the runtime behind it
(TensorFlow for SavedModels, LiteRT at the edge): its signatures and a way to run them."""
import dataclasses
from typing import Dict, List, Optional, Protocol, Sequence

import numpy as np

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"

# TF DataType names -> numpy dtypes the JSON and TensorProto converters produce.
NUMPY_DTYPES = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT8": np.int8, "DT_INT16": np.int16,
    "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_UINT8": np.uint8, "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64, "DT_BOOL": np.bool_, "DT_STRING": object,
}
DTYPE_NAMES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int8": "DT_INT8", "int16": "DT_INT16",
               "int32": "DT_INT32", "int64": "DT_INT64", "uint8": "DT_UINT8", "uint16": "DT_UINT16",
               "uint32": "DT_UINT32", "uint64": "DT_UINT64", "bool": "DT_BOOL", "float16": "DT_HALF",
               "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128", "string": "DT_STRING",
               "object": "DT_STRING"}


# The same, keyed by numpy dtype (numpy's dtype.name is slow: ~10 us, per response).
DTYPE_OF_NUMPY = {np.dtype(name): dtype for name, dtype in DTYPE_NAMES.items() if name != "string"}


def tf_dtype(array: np.ndarray) -> str:
    """The TF DataType name of an array's dtype (strings: DT_STRING)."""
    return DTYPE_OF_NUMPY.get(array.dtype) or ("DT_STRING" if array.dtype.kind in "OSU" else array.dtype.name)


def string_array(values) -> np.ndarray:
    """A rank-1 object array of the given bytes (np.array would make a fixed-width bytes array,
    or a 2-D one from equal-length values)."""
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str            # the graph tensor name, e.g. "serving_default_x:0"
    dtype: str           # a TF DataType name, e.g. "DT_FLOAT"
    shape: Optional[List[int]]  # -1 for an unknown dimension; None for unknown rank

    def as_json(self) -> dict:
        shape = ({"dim": [], "unknown_rank": True} if self.shape is None else
                 {"dim": [{"size": str(size), "name": ""} for size in self.shape], "unknown_rank": False})
        return {"dtype": self.dtype, "tensor_shape": shape, "name": self.name}


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    inputs: Dict[str, TensorInfo]
    outputs: Dict[str, TensorInfo]
    method_name: str = PREDICT_METHOD

    def as_json(self) -> dict:
        return {"inputs": {k: v.as_json() for k, v in self.inputs.items()},
                "outputs": {k: v.as_json() for k, v in self.outputs.items()},
                "method_name": self.method_name, "defaults": {}}

    def debug_string(self) -> str:
        """The SignatureDef in protobuf's text format, as SignatureDef::DebugString() prints it."""
        lines = []
        for field, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            for alias in sorted(tensors):
                info = tensors[alias]
                lines += [f"{field} {{", f'  key: "{alias}"', "  value {", f'    name: "{info.name}"',
                          f"    dtype: {info.dtype}", "    tensor_shape {"]
                if info.shape is None:
                    lines.append("      unknown_rank: true")
                for size in info.shape or []:
                    lines += ["      dim {", f"        size: {size}", "      }"]
                lines += ["    }", "  }", "}"]
        lines.append(f'method_name: "{self.method_name}"')
        return "\n".join(lines) + "\n"


class Servable(Protocol):
    """One loaded version. `run` takes and returns numpy arrays keyed by signature alias (all
    outputs, or the ones named) and may be called from several threads at once."""

    name: str
    version: int
    signatures: Dict[str, SignatureInfo]

    def run(self, signature_name: str, inputs: Dict[str, np.ndarray],
            outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]: ...

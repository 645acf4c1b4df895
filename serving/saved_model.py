"""A SavedModel version as a Servable: signatures read from saved_model.pb (so metadata shows
the real SignatureDefs), calls made through TensorFlow's loaded signature functions."""
from typing import Dict

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from serving import layout
from serving.errors import invalid, ServingError
from serving.servable import SignatureInfo, TensorInfo

SERVE_TAG = "serve"


def _tensor_info(proto) -> TensorInfo:
    shape = None if proto.tensor_shape.unknown_rank else [d.size for d in proto.tensor_shape.dim]
    return TensorInfo(proto.name, types_pb2.DataType.Name(proto.dtype), shape)


def read_signature_defs(path: str) -> Dict[str, object]:
    """The SignatureDef protos of the `serve` MetaGraph."""
    saved_model = saved_model_pb2.SavedModel()
    pb_path = layout.join(path, "saved_model.pb")
    if not layout.exists(pb_path):
        raise FileNotFoundError(f"no saved_model.pb in {path}")
    saved_model.ParseFromString(layout.read_bytes(pb_path))
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{path} has no MetaGraph tagged '{SERVE_TAG}'")


class SavedModelServable:
    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.signature_defs = read_signature_defs(path)
        self._loaded = tf.saved_model.load(path, tags=[SERVE_TAG])
        self._functions = dict(self._loaded.signatures)
        self._dtypes = {key: {name: spec.dtype for name, spec in function.structured_input_signature[1].items()}
                        for key, function in self._functions.items()}
        self.signatures = {
            key: SignatureInfo({k: _tensor_info(v) for k, v in sig.inputs.items()},
                               {k: _tensor_info(v) for k, v in sig.outputs.items()}, sig.method_name)
            for key, sig in self.signature_defs.items() if key in self._functions
        }

    def signature_def_json(self, key: str) -> dict:
        return json_format.MessageToDict(self.signature_defs[key], preserving_proto_field_name=True,
                                         including_default_value_fields=True)

    def run(self, signature_name: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        function = self._functions[signature_name]
        dtypes = self._dtypes[signature_name]
        try:
            # The flat call skips the binding of keyword arguments to the signature's structure,
            # half of a single-example call's Python time; the tensors go in parameter order.
            tensors = [tf.constant(inputs[name], dtype=dtypes[name]) for name in function.function_type.parameters]
            outputs = function._call_flat(tensors, function.captured_inputs)
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            raise invalid(str(error).strip().splitlines()[0]) from None
        except tf.errors.OpError as error:
            raise ServingError("INTERNAL", error.message) from None
        return {name: value.numpy() for name, value in outputs.items()}


def load_saved_model(name: str, version: int, path: str) -> SavedModelServable:
    return SavedModelServable(name, version, path)

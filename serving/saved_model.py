"""A SavedModel version as a Servable, run the way TF Serving runs it: the `serve` MetaGraph
loaded into a TensorFlow session, each request fed and fetched by the tensor names its
SignatureDef lists. That is the same for every kind of export (TF1 graphs with variables,
Estimators, TF2 tf.function signatures, Keras), and an error raised by TensorFlow keeps its
own code and message, as in TF Serving.

Each (signature, inputs, outputs) combination runs through a session callable. The fast one is
C++'s Session::MakeCallable, the call TF Serving makes, reached through a private method of
tf.compat.v1.Session (`_make_callable_from_options`): measured per single-example call of a small
model on one core, 20-25 us against 100-140 us for the public `Session.make_callable` (which goes
through `Session.run`'s Python feed handling) and for the eager signature functions of
tf.saved_model.load. It is the `session-callable` speed-up of config/speedups.py: used on TensorFlow
2.16.* only, and not with TFXLINE_SPEEDUPS=0 (or -session-callable);
the public callable is the fallback, with the same answers (tests/serving/test_any_saved_model.py);
it also refuses a feed whose shape contradicts the tensor's static shape, which C++ (and TF
Serving) accept."""
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import config_pb2, error_codes_pb2, saved_model_pb2

from config import speedups
from serving import layout
from serving.errors import ServingError
from serving.servable import SignatureInfo, TensorInfo

SERVE_TAG = "serve"
# Cached callables per servable: one per (signature, inputs, outputs) combination a client uses.
MAX_CALLABLES = 256

_session_config = tf.compat.v1.ConfigProto()


def fast_callables() -> bool:
    """Whether the private Session::MakeCallable path is used (see the module docstring)."""
    return speedups.applies("session-callable")


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """TensorFlow's thread pools for the sessions loaded after this call (0: TensorFlow's choice)."""
    _session_config.intra_op_parallelism_threads = intra_op
    _session_config.inter_op_parallelism_threads = inter_op


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


def serving_error(error: tf.errors.OpError) -> ServingError:
    """TensorFlow's status as TF Serving passes it on: same code, same message."""
    return ServingError(error_codes_pb2.Code.Name(error.error_code), error.message)


class SavedModelServable:
    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.signature_defs = read_signature_defs(path)
        self.signatures = {
            key: SignatureInfo({k: _tensor_info(v) for k, v in sig.inputs.items()},
                               {k: _tensor_info(v) for k, v in sig.outputs.items()}, sig.method_name)
            for key, sig in self.signature_defs.items()
        }
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=_session_config)
        with self._graph.as_default():
            tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], path)
        self._fast = fast_callables()
        self._callables: Dict[Tuple, object] = {}
        self._lock = threading.Lock()

    def signature_def_json(self, key: str) -> dict:
        return json_format.MessageToDict(self.signature_defs[key], preserving_proto_field_name=True,
                                         including_default_value_fields=True)

    def run(self, signature_name: str, inputs: Dict[str, np.ndarray],
            outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """The signature's outputs (or the named ones) for inputs keyed by alias. The arrays must
        already have the signature's dtypes; TensorFlow checks everything else."""
        signature = self.signature_defs[signature_name]
        feeds = sorted(inputs)
        fetches = list(outputs) if outputs is not None else list(signature.outputs)
        values = self.run_tensors({signature.inputs[alias].name: inputs[alias] for alias in feeds},
                                  [signature.outputs[alias].name for alias in fetches])
        return dict(zip(fetches, values))

    def run_tensors(self, feeds: Dict[str, np.ndarray], fetches: Sequence[str]) -> List[np.ndarray]:
        """One session run, by graph tensor names (TF Serving's Session::Run)."""
        names = tuple(sorted(feeds))
        try:
            call = self._callable(names, tuple(fetches))
            values = call(*[feeds[name] for name in names])
        except tf.errors.OpError as error:
            raise serving_error(error) from None
        except ValueError as error:
            # Session.run's own check of a feed against the tensor's static shape (public path).
            if str(error).startswith("Cannot feed value of shape"):
                raise ServingError("INVALID_ARGUMENT", str(error)) from None
            raise
        return [_array(value) for value in values]

    def signature_defaults(self, key: str) -> Dict[str, np.ndarray]:
        """SignatureDef.defaults: inputs a request may leave out."""
        defaults = self.signature_defs[key].defaults
        return {alias: tf.make_ndarray(proto) for alias, proto in defaults.items()} if defaults else {}

    def _callable(self, feeds: Tuple[str, ...], fetches: Tuple[str, ...]):
        key = (feeds, fetches)
        call = self._callables.get(key)
        if call is None:
            with self._lock:
                if self._fast:
                    call = self._session._make_callable_from_options(  # private: see the module docstring
                        config_pb2.CallableOptions(feed=feeds, fetch=fetches))
                else:
                    call = self._session.make_callable(list(fetches), list(feeds))
                if len(self._callables) < MAX_CALLABLES:
                    self._callables[key] = call
        return call


def _array(value) -> np.ndarray:
    """A fetched value as an array; a scalar string comes back as bytes."""
    return np.array(value, dtype=object) if isinstance(value, bytes) else np.asarray(value)


def load_saved_model(name: str, version: int, path: str) -> SavedModelServable:
    return SavedModelServable(name, version, path)

"""`tfxline edge serve`: TF Serving's REST predict API on the device, answered by the LiteRT
runtime (no TensorFlow). It watches the edge directory, loads a new version only after its
manifest's hashes check out, and keeps the old version serving when a new one is refused."""
import logging
import threading
from typing import Dict, Optional, Sequence

import numpy as np

from serving import layout
from serving.edge import runtime
from serving.http import run_event_loop, stop_signal
from serving.errors import invalid
from serving.registry import ModelRegistry, ModelSpec
from serving.servable import DEFAULT_SIGNATURE, DTYPE_NAMES, SignatureInfo, TensorInfo

log = logging.getLogger("tfxline.edge")


class EdgeServable:
    """A published TFLite version. It answers under the SavedModel's raw-features signature
    name and under serving_default, so clients of the SavedModel server need no change."""

    def __init__(self, name: str, version: int, model: runtime.EdgeModel):
        self.name, self.version, self._model = name, version, model
        inputs = {item["name"]: TensorInfo(item["name"], DTYPE_NAMES[item["dtype"]], item.get("shape", [-1]))
                  for item in model.inputs}
        outputs = {name: TensorInfo(name, "DT_FLOAT", [-1, -1]) for name in model.manifest["outputs"]}
        signature = SignatureInfo(inputs, outputs)
        self.signatures = {DEFAULT_SIGNATURE: signature, model.manifest["signature"]: signature}

    def run(self, signature_name: str, inputs: Dict[str, np.ndarray],
            outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        sizes = {name: value.shape for name, value in inputs.items()}
        if any(len(shape) != 1 for shape in sizes.values()) or len({s[0] for s in sizes.values()}) != 1:
            raise invalid(f"every input must be a list of one value per example, all of the same length; got shapes "
                          f"{ {name: list(shape) for name, shape in sorted(sizes.items())} }")
        try:
            results = self._model.run_columns(inputs)
        except ValueError as error:
            raise invalid(str(error)) from None
        return results if outputs is None else {name: results[name] for name in outputs}


def edge_loader(variant: str):
    def load(name: str, version: int, path: str) -> EdgeServable:
        return EdgeServable(name, version, runtime.load(path, variant))
    return load


def serve(edge_dir: str, model_name: str, port: int, variant: str, poll_seconds: float,
          auth_token: str = None, max_request_bytes: int = 16 << 20) -> None:
    from serving.inference import InferenceService
    from serving.metrics import Metrics
    from serving.rest import RestOptions, start_rest_server

    # Only versions with a manifest: one without is still being published (its manifest comes last).
    registry = ModelRegistry(edge_loader(variant), fall_back_to_older=True, list_versions=layout.edge_versions)
    registry.configure([ModelSpec(model_name, layout.absolute(layout.join(edge_dir, model_name)))])
    if not registry.ready():
        log.warning("no loadable version of %s under %s yet; answering 404 until one is published",
                    model_name, edge_dir)
    service = InferenceService(registry, Metrics(serves=registry.serves), threads=2)
    stop = threading.Event()
    threading.Thread(target=registry.watch, args=(poll_seconds, stop), name="version-watcher", daemon=True).start()

    async def run():
        server = await start_rest_server(service, RestOptions("/monitoring/prometheus/metrics", auth_token,
                                                              max_request_bytes), port)
        log.info("serving %s (%s TFLite) on REST port %d", model_name, variant, port)
        await stop_signal()
        stop.set()
        server.close()

    run_event_loop(run())

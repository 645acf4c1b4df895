"""The naive baseline for the serving benchmark: a per-request FastAPI endpoint.

The pattern most tutorials use: load the SavedModel with TensorFlow at start-up, then for every
request turn the JSON body into tensors and call the signature once, no batching. It speaks just
enough of TF Serving's REST API for the benchmark to send the same bytes to it and to tfxline's
server:

  GET  /v1/models/{name}           -> {"model_version_status": [{"version": ..., "state": "AVAILABLE", ...}]}
  POST /v1/models/{name}:predict   {"signature_name": ..., "instances": [{input: value, ...} or value, ...]}
                                   -> {"predictions": [row, ...]} (one output) or [{output: row, ...}, ...]

A missing input of a row takes the default of assets.extra/raw_features.json when the model has
one (tfxline's export). Usage:
  .venv/bin/python benchmarks/naive_fastapi_server.py --model_dir <base>/<name>/<version>
      [--port 8502] [--model_name taxi] [--signature serving_raw]
(uvicorn, one worker; the endpoint is a plain `def`, so FastAPI runs it in its thread pool.)
"""
import argparse
import json
import os
from typing import Any, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402


class PredictRequest(BaseModel):
    signature_name: Optional[str] = None
    instances: List[Any]


def _plain(value):
    """A row of a numpy output as JSON: bytes as text."""
    value = value.tolist() if hasattr(value, "tolist") else value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return [_plain(v) for v in value] if isinstance(value, list) else value


def create_app(model_dir: str, model_name: str, signature_name: str) -> FastAPI:
    model = tf.saved_model.load(model_dir)
    signature = model.signatures[signature_name]
    specs = signature.structured_input_signature[1]
    defaults = {}
    raw_features = os.path.join(model_dir, "assets.extra", "raw_features.json")
    if os.path.exists(raw_features):
        with open(raw_features) as handle:
            defaults = {f["name"]: f.get("default") for f in json.load(handle)}
    version = os.path.basename(os.path.normpath(model_dir))
    app = FastAPI()

    @app.get("/v1/models/{name}")
    def status(name: str):
        if name != model_name:
            raise HTTPException(404, f"Servable not found for request: Latest({name})")
        return {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    @app.post("/v1/models/{name}:predict")
    def predict(name: str, request: PredictRequest):
        if name != model_name:
            raise HTTPException(404, f"Servable not found for request: Latest({name})")
        if request.signature_name not in (None, "", signature_name):
            raise HTTPException(400, f"Serving signature name: \"{request.signature_name}\" not found")
        inputs = {}
        for alias, spec in specs.items():
            if len(specs) == 1 and not isinstance(request.instances[0], dict):
                column = request.instances
            else:
                column = [row.get(alias, defaults.get(alias)) for row in request.instances]
            if spec.dtype.is_integer:
                column = [int(v) for v in column]
            inputs[alias] = tf.constant(column, dtype=spec.dtype)
        outputs = {alias: value.numpy() for alias, value in signature(**inputs).items()}
        if len(outputs) == 1:
            (value,) = outputs.values()
            return {"predictions": _plain(value)}
        return {"predictions": [{alias: _plain(value[i]) for alias, value in outputs.items()}
                                for i in range(len(request.instances))]}

    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="a SavedModel version directory")
    parser.add_argument("--model_name", default="taxi")
    parser.add_argument("--signature", default="serving_raw", help="the signature every request calls")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8502)
    args = parser.parse_args(argv)
    app = create_app(args.model_dir, args.model_name, args.signature)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

"""The inspection software's client: raw features in, scores out, over REST or gRPC, against
real TF Serving or `tfxline serve` alike. Timeouts on every call; retries with exponential
backoff only where retrying is safe (connection errors, 429, 503, 504). Canary and shadow
releases are client-side, as TF Serving itself routes by the label a request names. The
fallback client answers from the device's own LiteRT model while the server cannot; over REST
it imports no TensorFlow, so it runs on an edge device's LiteRT-only install."""
import concurrent.futures
import dataclasses
import json
import logging
import os
import random
import threading
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import requests

log = logging.getLogger("tfxline.client")
RETRYABLE_HTTP = {429, 503, 504}
RETRYABLE_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}
STABLE, CANARY = "stable", "canary"


class PredictionError(RuntimeError):
    """The server refused the request (a 4xx, or a non-retryable gRPC status): retrying won't help."""

    def __init__(self, status, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class ServingClient:
    def __init__(self, model_name: str, host: str = "localhost", rest_port: int = 8501, grpc_port: int = 8500,
                 protocol: str = "rest", signature_name: str = "serving_raw", timeout: float = 5.0,
                 retries: int = 3, backoff: float = 0.05, token: Optional[str] = None, tls: bool = False,
                 ca_file: Optional[str] = None):
        if protocol not in ("rest", "grpc"):
            raise ValueError("protocol must be 'rest' or 'grpc'")
        self.model_name, self.protocol, self.signature_name = model_name, protocol, signature_name
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._rest_base = f"{'https' if tls else 'http'}://{host}:{rest_port}/v1/models/{model_name}"
        self._verify = ca_file or True
        self._session = requests.Session()
        self._grpc_target, self._tls, self._ca_file = f"{host}:{grpc_port}", tls, ca_file
        self._stub = None
        self._input_dtypes: Optional[Dict[str, str]] = None

    def predict(self, rows: Sequence[Dict[str, object]], version: Optional[int] = None,
                label: Optional[str] = None) -> np.ndarray:
        """Scores for each row: an array of shape [len(rows), outputs]."""
        if not rows:
            raise ValueError("no rows to score")
        call = self._predict_rest if self.protocol == "rest" else self._predict_grpc
        return self._with_retries(lambda: call(list(rows), version, label))

    def status(self) -> dict:
        return self._with_retries(lambda: self._get(""))

    def label_version(self, label: str) -> int:
        """The version a label points at on the server (from the model's metadata)."""
        if self.protocol == "rest":
            return int(self._with_retries(lambda: self._get(f"/labels/{label}/metadata"))["model_spec"]["version"])
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        request.model_spec.version_label = label
        response = self._with_retries(lambda: self._grpc_call(self._grpc().GetModelMetadata, request))
        return int(response.model_spec.version.value)

    def available_versions(self) -> List[int]:
        """The versions the server has loaded and serves."""
        if self.protocol == "rest":
            entries = self.status().get("model_version_status", [])
            return sorted(int(entry["version"]) for entry in entries if entry.get("state") == "AVAILABLE")
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        channel = (grpc.secure_channel(self._grpc_target, grpc.ssl_channel_credentials(
            open(self._ca_file, "rb").read() if self._ca_file else None)) if self._tls
            else grpc.insecure_channel(self._grpc_target))
        with channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            response = self._with_retries(lambda: self._grpc_call(stub.GetModelStatus, request))
        return sorted(int(entry.version) for entry in response.model_version_status
                      if get_model_status_pb2.ModelVersionStatus.State.Name(entry.state) == "AVAILABLE")

    def _with_retries(self, call):
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (requests.ConnectionError, requests.Timeout, _Retryable) as error:
                if attempt == self.retries:
                    raise PredictionError("UNAVAILABLE", f"{self.model_name}: no answer after "
                                                         f"{self.retries + 1} attempts: {error}") from None
                time.sleep(self.backoff * 2 ** attempt * (0.5 + random.random()))

    def _url(self, version: Optional[int], label: Optional[str]) -> str:
        if version is not None:
            return f"{self._rest_base}/versions/{version}"
        return f"{self._rest_base}/labels/{label}" if label else self._rest_base

    def _get(self, suffix: str) -> dict:
        response = self._session.get(self._rest_base + suffix, headers=self._headers, timeout=self.timeout,
                                     verify=self._verify)
        return self._json(response)

    def _json(self, response: requests.Response) -> dict:
        if response.status_code in RETRYABLE_HTTP:
            raise _Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError:
            raise PredictionError(response.status_code, response.text[:200]) from None
        if response.status_code != 200:
            raise PredictionError(response.status_code, body.get("error", response.text[:200]))
        return body

    def _predict_rest(self, rows, version, label) -> np.ndarray:
        body = json.dumps({"signature_name": self.signature_name, "instances": rows})
        response = self._session.post(self._url(version, label) + ":predict", data=body, headers=self._headers,
                                      timeout=self.timeout, verify=self._verify)
        predictions = self._json(response)["predictions"]
        return np.array(predictions, dtype=np.float32).reshape(len(rows), -1)

    def _grpc(self):
        if self._stub is None:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            if self._tls:
                roots = open(self._ca_file, "rb").read() if self._ca_file else None
                channel = grpc.secure_channel(self._grpc_target, grpc.ssl_channel_credentials(roots))
            else:
                channel = grpc.insecure_channel(self._grpc_target)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return self._stub

    def _grpc_call(self, method, request):
        import grpc

        metadata = [("authorization", self._headers["Authorization"])] if self._headers else None
        try:
            return method(request, timeout=self.timeout, metadata=metadata)
        except grpc.RpcError as error:
            if error.code().name in RETRYABLE_GRPC:
                raise _Retryable(f"{error.code().name}: {error.details()}") from None
            raise PredictionError(error.code().name, error.details()) from None

    def _dtypes(self) -> Dict[str, str]:
        """Input dtypes from the model's metadata, fetched once: gRPC tensors carry their dtype."""
        if self._input_dtypes is None:
            from tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            request.model_spec.name = self.model_name
            response = self._grpc_call(self._grpc().GetModelMetadata, request)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            inputs = signature_map.signature_def[self.signature_name].inputs
            from tensorflow.core.framework import types_pb2

            self._input_dtypes = {name: types_pb2.DataType.Name(info.dtype) for name, info in inputs.items()}
        return self._input_dtypes

    def _predict_grpc(self, rows, version, label) -> np.ndarray:
        from tensorflow_serving.apis import predict_pb2

        from serving.grpc_api import to_tensor_proto
        from serving.servable import NUMPY_DTYPES

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.signature_name
        if version is not None:
            request.model_spec.version.value = version
        elif label:
            request.model_spec.version_label = label
        for name, dtype in self._dtypes().items():
            values = [row[name] for row in rows]
            if dtype == "DT_STRING":
                values = [v.encode() if isinstance(v, str) else v for v in values]
            request.inputs[name].CopyFrom(to_tensor_proto(np.array(values, dtype=NUMPY_DTYPES[dtype])))
        response = self._grpc_call(self._grpc().Predict, request)
        import tensorflow as tf

        output = next(iter(response.outputs.values()))
        return tf.make_ndarray(output).astype(np.float32).reshape(len(rows), -1)


class _Retryable(Exception):
    pass


class CanaryClient:
    """Sends `canary_share` of requests to the `canary` label and the rest to `stable`; if no
    canary is labelled, everything goes to stable."""

    def __init__(self, client: ServingClient, canary_share: float, seed: Optional[int] = None):
        if not 0.0 <= canary_share <= 1.0:
            raise ValueError("canary_share must be between 0 and 1")
        self.client, self.canary_share = client, canary_share
        self._random = random.Random(seed)

    def predict(self, rows) -> "tuple[np.ndarray, str]":
        label = CANARY if self._random.random() < self.canary_share else STABLE
        try:
            return self.client.predict(rows, label=label), label
        except PredictionError as error:
            if label == CANARY and "Unrecognized servable version label" in error.message:
                return self.client.predict(rows, label=STABLE), STABLE
            raise


class ShadowClient:
    """Answers from `stable` and sends the same rows to `canary` in the background; the shadow's
    answers are only compared and disagreements logged (JSON lines), never returned."""

    def __init__(self, client: ServingClient, tolerance: float = 0.05, disagreement_log: Optional[str] = None):
        self.client, self.tolerance, self.disagreement_log = client, tolerance, disagreement_log
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="shadow")
        self.compared = 0
        self.disagreements = 0

    def predict(self, rows) -> np.ndarray:
        shadow = self._pool.submit(self.client.predict, rows, None, CANARY)
        answer = self.client.predict(rows, label=STABLE)
        shadow.add_done_callback(lambda future: self._compare(rows, answer, future))
        return answer

    def _compare(self, rows, answer: np.ndarray, future) -> None:
        try:
            shadow = future.result()
        except Exception as error:  # the shadow never affects the answer
            log.warning("shadow call failed: %s", error)
            return
        self.compared += len(rows)
        for row, stable_scores, shadow_scores in zip(rows, answer, shadow):
            difference = float(np.max(np.abs(stable_scores - shadow_scores)))
            if difference > self.tolerance:
                self.disagreements += 1
                if self.disagreement_log:
                    with open(self.disagreement_log, "a") as handle:
                        handle.write(json.dumps({"row": row, "stable": stable_scores.tolist(),
                                                 "canary": shadow_scores.tolist(), "difference": difference},
                                                default=str) + "\n")

    def close(self) -> None:
        self._pool.shutdown(wait=True)



@dataclasses.dataclass(frozen=True)
class Answer:
    """Scores with the model version and the path that produced them."""
    scores: np.ndarray
    version: int
    path: str  # SERVER or EDGE


SERVER, EDGE = "server", "edge"


class FallbackClient:
    """The central server first, the device's LiteRT model (the newest good version in
    `<edge_dir>/<model>`) when the server is unreachable or does not answer within the client's
    timeout. While the server is down, requests go straight to the local model and the server is
    tried again after a backoff (doubling up to `max_retry_seconds`); the first answer it gives
    switches back. Every switch is logged and kept in `switches`.

    Answers from the server come from the version the `label` points at, asked by number, so
    each answer names its version. The local model must be that version or its predecessor (the
    newest older version the server keeps loaded next to it: a release's rollback target);
    otherwise a warning is logged, and the local model still answers when the server cannot."""

    def __init__(self, client: ServingClient, edge_dir: str, variant: str = "float", label: str = STABLE,
                 retry_seconds: float = 0.5, max_retry_seconds: float = 30.0, refresh_seconds: float = 30.0):
        self.client, self.label, self.variant = client, label, variant
        self.edge_base = os.path.join(edge_dir, client.model_name)
        self.retry_seconds, self.max_retry_seconds, self.refresh_seconds = (retry_seconds, max_retry_seconds,
                                                                            refresh_seconds)
        self.switches: List[dict] = []
        self.path = SERVER
        self.version_mismatch: Optional[str] = None
        self._lock = threading.Lock()
        self._backoff = retry_seconds
        self._retry_at = 0.0
        self._server_version: Optional[int] = None
        self._resolved_at = 0.0
        self._edge = None

    def predict(self, rows: Sequence[Dict[str, object]]) -> Answer:
        rows = self._complete(rows)
        if time.monotonic() >= self._retry_at:
            try:
                version = self._stable_version()
                scores = self.client.predict(rows, version=version)
            except PredictionError as error:
                if error.status != "UNAVAILABLE":
                    raise  # the server answered: a bad request stays the caller's error
                self._server_down(error.message)
            else:
                self._server_up()
                return Answer(scores, version, SERVER)
        return self._edge_answer(rows)

    def _complete(self, rows) -> List[dict]:
        """A feature left out takes the model's missing value on both paths (the server, like TF
        Serving, wants every input; the edge runtime fills them in)."""
        edge = self._edge_model()
        if edge is None:
            return list(rows)
        defaults = {item["name"]: item["default"] for item in edge.inputs}
        return [{**defaults, **row} if isinstance(row, dict) else row for row in rows]

    def _stable_version(self) -> int:
        if self._server_version is None or time.monotonic() - self._resolved_at > self.refresh_seconds:
            version = self.client.label_version(self.label)
            self._server_version, self._resolved_at = version, time.monotonic()
            self._check_edge_version(version)
        return self._server_version

    def _edge_model(self):
        from serving.edge import runtime

        self._edge = runtime.load_newest(self.edge_base, self.variant, self._edge)
        return self._edge

    def _check_edge_version(self, stable: int) -> None:
        edge = self._edge_model()
        if edge is None:
            log.warning("fallback: no loadable edge model under %s; nothing answers while the server is down",
                        self.edge_base)
            return
        if edge.version == stable:
            self.version_mismatch = None
            return
        predecessor = max((v for v in self.client.available_versions() if v < stable), default=None)
        if edge.version == predecessor:
            self.version_mismatch = None
            log.info("fallback: the edge model is version %d, the predecessor of the server's %s %d",
                     edge.version, self.label, stable)
            return
        self.version_mismatch = (f"the edge model under {self.edge_base} is version {edge.version}, neither the "
                                 f"server's {self.label} {stable} nor its predecessor {predecessor}; publish "
                                 f"version {stable} to the device")
        log.warning("fallback: %s", self.version_mismatch)

    def _server_down(self, reason: str) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self._backoff * (0.5 + random.random() / 2)
            self._backoff = min(self._backoff * 2, self.max_retry_seconds)
            if self.path == SERVER:
                self._switch(EDGE, reason)

    def _server_up(self) -> None:
        with self._lock:
            self._backoff = self.retry_seconds
            if self.path == EDGE:
                self._server_version = None  # a release may have moved the label meanwhile
                self._switch(SERVER, "the server answers again")

    def _switch(self, path: str, reason: str) -> None:
        self.path = path
        self.switches.append({"time": time.time(), "to": path, "reason": reason})
        log.warning("fallback: answering from the %s: %s", path, reason)

    def _edge_answer(self, rows) -> Answer:
        edge = self._edge_model()
        if edge is None:
            raise PredictionError("UNAVAILABLE", f"{self.client.model_name}: the server does not answer and "
                                                 f"there is no loadable edge model under {self.edge_base}")
        return Answer(np.asarray(edge.predict(list(rows)), dtype=np.float32).reshape(len(rows), -1),
                      edge.version, EDGE)

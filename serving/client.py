"""The inspection software's client: raw features in, scores out, over REST or gRPC, against
real TF Serving or `tfxline serve` alike. Timeouts on every call; retries with exponential
backoff only where retrying is safe (connection errors, 429, 503, 504). Canary and shadow
releases are client-side, as TF Serving itself routes by the label a request names."""
import concurrent.futures
import json
import logging
import random
import time
from typing import Dict, Optional, Sequence

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


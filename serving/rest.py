"""TF Serving's REST API (`/v1/models/...`): the same URLs, JSON, status codes and error
messages, plus Prometheus metrics, health probes, an optional bearer token and a body size
limit. Runtime-independent: the edge server uses it with LiteRT servables."""
import hmac
import json
import re
import time
from typing import Callable, List, Optional
from urllib.parse import unquote

from serving import tensor_json
from serving.errors import ServingError, invalid
from serving.http import Request, Response, start_http_server
from serving.inference import InferenceService, serialize_examples, status_error
from serving.metrics import LATENCY_BUCKETS, REQUEST_COUNT, REQUEST_LATENCY, VERSION_LATENCY

# The exact route grammar of TF Serving's http_rest_api_util.cc.
_NAME = r"([^/:]+)"
POST_PATH = re.compile(rf"/v1/models/{_NAME}(?:/versions/(\d+)|/labels/{_NAME})?:(classify|regress|predict)",
                       re.IGNORECASE)
GET_PATH = re.compile(rf"/v1/models(?:/{_NAME})?(?:/versions/(\d+)|/labels/{_NAME})?(?:/(metadata))?", re.IGNORECASE)
V1_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
INT64_MAX = 2 ** 63 - 1
HEALTH_PATHS = ("/healthz", "/readyz")


class RestOptions:
    def __init__(self, monitoring_path: Optional[str] = None, auth_token: Optional[str] = None,
                 max_request_bytes: int = 64 << 20, timeout_seconds: float = 30.0, cors: bool = False,
                 peer_metrics: Optional[Callable[[], List[dict]]] = None):
        self.monitoring_path, self.auth_token = monitoring_path, auth_token
        self.peer_metrics = peer_metrics or (lambda: [])
        self.max_request_bytes, self.timeout_seconds, self.cors = max_request_bytes, timeout_seconds, cors


CORS_HEADERS = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "POST, GET"),
                ("Access-Control-Allow-Headers", "Content-Type")]


def _json_response(status: int, body: str, cors: bool) -> Response:
    return Response(status, body.encode(), headers=CORS_HEADERS if cors else [])


def _error_body(error: ServingError) -> str:
    return json.dumps({"error": error.message})


def _version(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    if int(text) > INT64_MAX:
        raise invalid(f"Failed to convert version: {text} to numeric.")
    return int(text)


async def start_rest_server(service: InferenceService, options: RestOptions, port: int, tls=None,
                            reuse_port: bool = False):
    handler = _Handler(service, options)
    return await start_http_server(handler.handle, "0.0.0.0", port, options.max_request_bytes, handler.too_large,
                                   tls, reuse_port)


class _Handler:
    def __init__(self, service: InferenceService, options: RestOptions):
        self.service, self.options = service, options

    def too_large(self, size: int) -> Response:
        error = ServingError("INVALID_ARGUMENT",
                             f"Request body of {size} bytes is larger than the server's limit of "
                             f"{self.options.max_request_bytes} bytes (--max_request_bytes); send fewer instances "
                             "per request")
        self.service.metrics.count(REQUEST_COUNT, model_name="", status=error.code)
        return Response(413, _error_body(error).encode())

    async def handle(self, request: Request) -> Response:
        path = request.path
        if self.options.monitoring_path and path.split("?", 1)[0] == self.options.monitoring_path:
            if path != self.options.monitoring_path:
                return Response(400, f"Unexpected path: {path}".encode(), "text/plain")
            return Response(200, self.service.metrics.exposition(self.options.peer_metrics()).encode(), "text/plain")
        if path in HEALTH_PATHS:
            ready = path == "/healthz" or self.service.registry.ready()
            body = json.dumps({"status": "ok" if ready else "no model version is available yet"})
            return Response(200 if ready else 503, body.encode())
        if not V1_PATH.fullmatch(path):
            return Response(404, b"Not Found", "text/plain")
        if request.method == "OPTIONS":
            origin = request.headers.get("origin", "")
            return Response(200 if re.match(r"https?://", origin) else 400, b"", None)
        if self.options.auth_token is not None and not self._authorized(request):
            return _json_response(401, _error_body(ServingError(
                "UNAUTHENTICATED", "Missing or wrong bearer token: send 'Authorization: Bearer <token>'")),
                self.options.cors)
        started = time.perf_counter()
        model_name, api, version = "", "", ""
        try:
            method = request.method
            post = POST_PATH.fullmatch(path) if method == "POST" else None
            get = GET_PATH.fullmatch(path) if method == "GET" else None
            if post is None and get is None:
                raise invalid(f"Malformed request: {method} {path}")
            if post is not None:
                model_name, api = unquote(post.group(1)), post.group(4).lower()
                if post.group(4) != api:
                    raise invalid(f"Malformed request: {method} {path}")
                coroutine = self._infer(api, model_name, _version(post.group(2)),
                                        unquote(post.group(3)) if post.group(3) else None, request.body)
            else:
                model_name = unquote(get.group(1)) if get.group(1) else ""
                if not model_name:
                    raise invalid("Missing model name in request.")
                label = unquote(get.group(3)) if get.group(3) else None
                if get.group(4) == "metadata":
                    coroutine = self._metadata(model_name, _version(get.group(2)), label)
                else:
                    coroutine = self._status(model_name, _version(get.group(2)))
            body, version = await coroutine
            status, code = 200, "OK"
        except Exception as raised:  # every failure becomes a JSON error; the server keeps serving
            error = status_error(raised)
            body, status, code = _error_body(error), error.http_status, error.code
        metrics = self.service.metrics
        metrics.count(REQUEST_COUNT, model_name=model_name, status=code)
        micros = (time.perf_counter() - started) * 1e6
        if code == "OK":
            metrics.observe(REQUEST_LATENCY, micros, LATENCY_BUCKETS, model_name=model_name, API=api,
                            entrypoint="REST")
        metrics.observe(VERSION_LATENCY, micros, LATENCY_BUCKETS, model_name=model_name, version=version,
                        status=code)
        return _json_response(status, body, self.options.cors)

    def _authorized(self, request: Request) -> bool:
        sent = request.headers.get("authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {self.options.auth_token}".encode())

    async def _infer(self, api: str, name: str, version: Optional[int], label: Optional[str], body: bytes):
        request = tensor_json.parse_body(body)
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid("'signature_name' key must be a string value.")
        if api == "predict":
            servable = self.service.resolve(name, version, label)
            key, signature = self.service.predict_signature(servable, signature_name)
            inputs, row_format = tensor_json.predict_inputs(request, key, signature)
            outputs = await self.service.run(servable, key, inputs, timeout=self.options.timeout_seconds)
            return tensor_json.predict_response(outputs, row_format), str(servable.version)
        examples, context = tensor_json.example_features(request, api)
        servable = self.service.resolve(name, version, label)
        # The signature is checked before any tf.Example is built (which needs TensorFlow's protos).
        kind = "classification" if api == "classify" else "regression"
        self.service.example_signature(servable, signature_name, kind)
        serialized = serialize_examples(examples, context)
        if api == "classify":
            results = await self.service.classify(servable, signature_name, serialized, self.options.timeout_seconds)
            body = "[" + ",".join("[" + ",".join(f"[{json.dumps(label)}, {tensor_json.format_float(score, 9)}]"
                                                 for label, score in row) + "]" for row in results) + "]"
        else:
            results = await self.service.regress(servable, signature_name, serialized, self.options.timeout_seconds)
            body = "[" + ",".join(tensor_json.format_float(value, 9) for value in results) + "]"
        return '{"results": ' + body + "}", str(servable.version)

    async def _status(self, name: str, version: Optional[int]):
        entries = [{"version": str(v), "state": s.state,
                    "status": {"error_code": s.error_code, "error_message": s.error_message}}
                   for v, s in self.service.registry.status(name, version)]
        return json.dumps({"model_version_status": entries}, indent=1), ""

    async def _metadata(self, name: str, version: Optional[int], label: Optional[str]):
        servable = self.service.resolve(name, version, label)
        signature_defs = {key: signature_def_json(servable, key) for key in servable.signatures}
        body = {"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                "metadata": {"signature_def": {"signature_def": signature_defs}}}
        return json.dumps(body, indent=1), str(servable.version)


def signature_def_json(servable, key: str) -> dict:
    exact = getattr(servable, "signature_def_json", None)
    return exact(key) if exact is not None else servable.signatures[key].as_json()

"""TF Serving's REST API (`/v1/models/...`) as model_servers/http_rest_api_handler.cc and
http_server.cc answer it: the same URLs, checks in the same order, status codes, JSON and error
messages; plus Prometheus metrics, health probes, an optional bearer token (checked before the
body is read) and a body size limit. Runtime-independent: the edge server uses it with LiteRT
servables."""
import hmac
import json
import re
import time
from typing import Callable, List, Optional
from urllib.parse import unquote

from serving import request_id, tensor_json
from serving.errors import ServingError, invalid
from serving.http import HttpLimits, Request, Response, start_http_server
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
                 peer_metrics: Optional[Callable[[], List[dict]]] = None, limits: Optional[HttpLimits] = None):
        self.monitoring_path, self.auth_token = monitoring_path, auth_token
        self.peer_metrics = peer_metrics or (lambda: [])
        self.max_request_bytes, self.timeout_seconds, self.cors = max_request_bytes, timeout_seconds, cors
        self.limits = limits or HttpLimits(max_body_bytes=max_request_bytes)


CORS_HEADERS = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "POST, GET"),
                ("Access-Control-Allow-Headers", "Content-Type, X-Request-Id"),
                ("Access-Control-Expose-Headers", "X-Request-Id")]
UNAUTHENTICATED = "Missing or wrong bearer token: send 'Authorization: Bearer <token>'"


def _version(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    if int(text) > INT64_MAX:
        raise invalid(f"Failed to convert version: {text} to numeric.")
    return int(text)


async def start_rest_server(service: InferenceService, options: RestOptions, port: int, tls=None,
                            reuse_port: bool = False):
    handler = _Handler(service, options)
    return await start_http_server(handler.handle, "0.0.0.0", port, options.limits, handler.refuse,
                                   handler.too_large, tls, reuse_port)


class _Handler:
    def __init__(self, service: InferenceService, options: RestOptions):
        self.service, self.options = service, options
        self._expected = f"Bearer {options.auth_token}".encode() if options.auth_token is not None else None

    def _json(self, status: int, body: str) -> Response:
        return Response(status, tensor_json.to_bytes(body), headers=CORS_HEADERS if self.options.cors else [])

    def _error(self, error: ServingError) -> Response:
        return self._json(error.http_status, tensor_json.error_body(error.message))

    def refuse(self, method: str, path: str, headers: dict, length: Optional[int]) -> Optional[Response]:
        """Called once the headers are read, before any of the body is: the answer to a request
        that is refused whatever its body (wrong token, body over the limit), else None."""
        refusal = self._refusal(method, path, headers, length)
        if refusal is not None:
            refusal.headers = [*refusal.headers, (request_id.HEADER, request_id.choose(headers.get("x-request-id")))]
        return refusal

    def _refusal(self, method: str, path: str, headers: dict, length: Optional[int]) -> Optional[Response]:
        if self._expected is not None and not self._public(method, path):
            sent = headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(sent, self._expected):
                self.service.metrics.count(REQUEST_COUNT, model_name="", status="UNAUTHENTICATED")
                return self._error(ServingError("UNAUTHENTICATED", UNAUTHENTICATED))
        if length is not None and length > self.options.max_request_bytes:
            return self.too_large(length)
        return None

    def _public(self, method: str, path: str) -> bool:
        """CORS preflights, probes and metrics need no token."""
        return (method == "OPTIONS" or path in HEALTH_PATHS or not V1_PATH.fullmatch(path)
                or (self.options.monitoring_path is not None
                    and path.split("?", 1)[0] == self.options.monitoring_path))

    def too_large(self, size: int) -> Response:
        error = ServingError("INVALID_ARGUMENT",
                             f"Request body of {size} bytes is larger than the server's limit of "
                             f"{self.options.max_request_bytes} bytes (--max_request_bytes); send fewer instances "
                             "per request")
        self.service.metrics.count(REQUEST_COUNT, model_name="", status=error.code)
        return Response(413, tensor_json.to_bytes(tensor_json.error_body(error.message)))

    async def handle(self, request: Request) -> Response:
        identifier = request_id.choose(request.headers.get("x-request-id"))
        request_id.current.set(identifier)
        response = await self._handle(request)
        response.headers = [*response.headers, (request_id.HEADER, identifier)]
        return response

    async def _handle(self, request: Request) -> Response:
        path = request.path
        monitoring = self.options.monitoring_path
        if monitoring and path.split("?", 1)[0] == monitoring:
            if path != monitoring:
                return Response(400, f"Unexpected path: {path}. Should be {monitoring}".encode(), "text/plain")
            return Response(200, self.service.metrics.exposition(self.options.peer_metrics()).encode(), "text/plain")
        if path in HEALTH_PATHS:
            ready = path == "/healthz" or self.service.registry.ready()
            body = json.dumps({"status": "ok" if ready else "no model version is available yet"})
            return Response(200 if ready else 503, body.encode())
        if not V1_PATH.fullmatch(path):
            return Response(404, b"Not Found", "text/plain")
        if request.method == "OPTIONS":
            origin = request.headers.get("origin", "")
            self.service.metrics.count(REQUEST_COUNT, model_name="",
                                       status="OK" if re.match(r"https?://", origin) else "FAILED_PRECONDITION")
            return Response(200 if re.match(r"https?://", origin) else 400, b"",
                            headers=CORS_HEADERS if self.options.cors else [])
        started = time.perf_counter()
        model_name, api, version = "", "", ""
        try:
            post = POST_PATH.fullmatch(path) if request.method == "POST" else None
            get = GET_PATH.fullmatch(path) if request.method == "GET" else None
            match = post or get
            if match is not None and match.group(1):
                model_name = unquote(match.group(1))
            body, version = await self._dispatch(request, post, get, model_name)
            response, code = self._json(200, body), "OK"
            api = post.group(4) if post is not None else ""
        except RecursionError:  # only a request body can nest this deep
            error = invalid("JSON Value nests too deeply to be a tensor or an example")
            response, code = self._error(error), error.code
        except Exception as raised:  # every failure becomes a JSON error; the server keeps serving
            error = status_error(raised)
            response, code = self._error(error), error.code
        metrics = self.service.metrics
        metrics.count(REQUEST_COUNT, model_name=model_name, status=code)
        micros = (time.perf_counter() - started) * 1e6
        if code == "OK":
            metrics.observe(REQUEST_LATENCY, micros, LATENCY_BUCKETS, model_name=model_name, API=api,
                            entrypoint="REST")
        metrics.observe(VERSION_LATENCY, micros, LATENCY_BUCKETS, model_name=model_name, version=version,
                        status=code)
        return response

    async def _dispatch(self, request: Request, post, get, name: str):
        """The rest of ParseModelInfo, and HttpRestApiHandler::ProcessRequest's dispatch."""
        match = post or get
        if match is not None:
            version = _version(match.group(2))
            label = unquote(match.group(3)) if match.group(3) else None
        if post is not None and post.group(4) in ("classify", "regress", "predict"):
            return await self._infer(post.group(4), name, version, label, request.body)
        if get is not None:
            if not name:
                raise invalid("Missing model name in request.")
            if get.group(4) == "metadata":
                return await self._metadata(name, version, label)
            return await self._status(name, version)
        raise invalid(f"Malformed request: {request.method} {request.path}")

    async def _infer(self, api: str, name: str, version: Optional[int], label: Optional[str], body: bytes):
        request = tensor_json.parse_body(body)
        signature_name = request.get("signature_name", "")
        if type(signature_name) is not str:
            raise tensor_json.format_error(request, "not formatted correctly. 'signature_name' key must be a "
                                                    "string value.")
        timeout = self.options.timeout_seconds
        if api == "predict":
            servable = self.service.resolve(name, version, label)
            key, signature = self.service.predict_signature(servable, signature_name)
            inputs, row_format = tensor_json.predict_inputs(request, key, signature)
            _, outputs = await self.service.predict(servable, signature_name, inputs, timeout=timeout)
            return tensor_json.predict_response(outputs, row_format), str(servable.version)
        examples, context = tensor_json.example_request(request)
        servable = self.service.resolve(name, version, label)
        serialized = lambda: serialize_examples(examples, context)  # noqa: E731 - after the signature checks
        if api == "classify":
            results = await self.service.classify(servable, signature_name, serialized, timeout)
            return tensor_json.classify_response(results), str(servable.version)
        values = await self.service.regress(servable, signature_name, serialized, timeout)
        return tensor_json.regress_response(values), str(servable.version)

    async def _status(self, name: str, version: Optional[int]):
        entries = [{"version": str(v), "state": s.state,
                    "status": {"error_code": s.error_code, "error_message": s.error_message}}
                   for v, s in self.service.registry.status(name, version)]
        return json.dumps({"model_version_status": entries}, indent=1), ""

    async def _metadata(self, name: str, version: Optional[int], label: Optional[str]):
        servable = self.service.resolve(name, version, label)
        signature_defs = {key: signature_def_json(servable, key) for key in servable.signatures}
        body = {"model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
                "metadata": {"signature_def": {"signature_def": signature_defs}}}
        return json.dumps(body, indent=1), str(servable.version)


def signature_def_json(servable, key: str) -> dict:
    exact = getattr(servable, "signature_def_json", None)
    return exact(key) if exact is not None else servable.signatures[key].as_json()

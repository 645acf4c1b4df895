"""A small HTTP server on a loopback port that answers the Kubeflow Pipelines v2beta1 REST calls
`tfxline submit` makes through kfp.Client (healthz, pipelines and their versions, upload,
experiments, runs) and records what arrives: the uploaded spec bytes, the run bodies.

It is no KFP backend: it keeps its state in memory and runs nothing. It checks what the real
API server checks at these calls, from its source (backend/src/apiserver): an upload must parse
as a pipeline spec, names must be unique, and creating a run compiles the spec, which fails for
resolver tasks (argocompiler/dag.go: "resolver executors not implemented")."""
import dataclasses
import email.parser
import email.policy
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlparse

import yaml

CREATED = "2026-01-01T00:00:00Z"


@dataclasses.dataclass
class Received:
    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    body: bytes


class FakeKfp:
    def __init__(self, token: Optional[str] = None, reject_uploads: Optional[str] = None):
        self.token, self.reject_uploads = token, reject_uploads
        self.requests: List[Received] = []
        self.pipelines: Dict[str, dict] = {}
        self.versions: Dict[str, List[dict]] = {}
        self.uploads: Dict[str, bytes] = {}  # version id -> the uploaded file's bytes
        self.experiments: Dict[str, dict] = {}
        self.runs: List[dict] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ---- the API --------------------------------------------------------------------------

    def handle(self, request: Received):
        with self._lock:
            self.requests.append(request)
            if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
                return 401, {"error": "Unauthenticated", "code": 16, "message": "Unauthenticated"}
            path, method = request.path, request.method
            if path == "/apis/v2beta1/healthz":
                return 200, {"multi_user": False}
            if path == "/apis/v2beta1/pipelines" and method == "GET":
                found = _filtered(list(self.pipelines.values()), request.query)
                return 200, {"pipelines": found, "total_size": len(found)} if found else {}
            if path == "/apis/v2beta1/pipelines/upload" and method == "POST":
                return self._upload(request, pipeline_id=None)
            if path == "/apis/v2beta1/pipelines/upload_version" and method == "POST":
                return self._upload(request, pipeline_id=request.query.get("pipelineid", [""])[0])
            if path.startswith("/apis/v2beta1/pipelines/") and path.endswith("/versions") and method == "GET":
                versions = _filtered(self.versions.get(path.split("/")[4], []), request.query)
                return 200, {"pipeline_versions": versions, "total_size": len(versions)} if versions else {}
            if path == "/apis/v2beta1/experiments" and method == "GET":
                found = _filtered(list(self.experiments.values()), request.query)
                return 200, {"experiments": found, "total_size": len(found)} if found else {}
            if path == "/apis/v2beta1/experiments" and method == "POST":
                body = json.loads(request.body)
                experiment = {"experiment_id": str(uuid.uuid4()), "display_name": body["display_name"],
                              "namespace": body.get("namespace") or "", "created_at": CREATED}
                self.experiments[experiment["experiment_id"]] = experiment
                return 200, experiment
            if path == "/apis/v2beta1/runs" and method == "POST":
                return self._create_run(json.loads(request.body))
            return 404, {"error": f"no route {method} {path}", "code": 5, "message": f"no route {method} {path}"}

    def _upload(self, request: Received, pipeline_id: Optional[str]):
        content = _uploaded_file(request)
        if self.reject_uploads:
            return 400, {"error": self.reject_uploads, "code": 3, "message": self.reject_uploads}
        spec = _parse_spec(content)
        if isinstance(spec, str):
            return 400, {"error": spec, "code": 3, "message": spec}
        name = request.query.get("name", [spec["pipelineInfo"]["name"]])[0]
        if pipeline_id is None:
            if any(p["display_name"] == name for p in self.pipelines.values()):
                message = f"Failed to create a pipeline: pipeline {name} already exists"
                return 409, {"error": message, "code": 6, "message": message}
            pipeline_id = str(uuid.uuid4())
            self.pipelines[pipeline_id] = {"pipeline_id": pipeline_id, "display_name": name, "created_at": CREATED}
            self.versions[pipeline_id] = []
        elif pipeline_id not in self.pipelines:
            return 404, {"error": "pipeline not found", "code": 5, "message": "pipeline not found"}
        if any(v["display_name"] == name for v in self.versions[pipeline_id]):
            message = f"Failed to create a pipeline version: version {name} already exists"
            return 409, {"error": message, "code": 6, "message": message}
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": str(uuid.uuid4()), "display_name": name,
                   "created_at": CREATED}
        self.versions[pipeline_id].append(version)
        self.uploads[version["pipeline_version_id"]] = content
        return 200, (self.pipelines[pipeline_id] if request.path.endswith("/upload") else version)

    def _create_run(self, body: dict):
        reference = body.get("pipeline_version_reference") or {}
        content = self.uploads.get(reference.get("pipeline_version_id", ""))
        if content is None:
            return 404, {"error": "pipeline version not found", "code": 5, "message": "pipeline version not found"}
        spec = yaml.safe_load(content)
        if any("resolver" in e for e in spec.get("deploymentSpec", {}).get("executors", {}).values()):
            message = ("Failed to create a run: failed to compile job: resolver executors not implemented")
            return 400, {"error": message, "code": 3, "message": message}
        run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": CREATED}
        self.runs.append(run)
        return 200, run


def _filtered(items: List[dict], query: Dict[str, List[str]]) -> List[dict]:
    if "filter" not in query:
        return items
    predicates = json.loads(query["filter"][0]).get("predicates", [])
    for predicate in predicates:
        key, value = predicate["key"], predicate.get("stringValue", predicate.get("string_value"))
        items = [item for item in items if item.get(key) == value]
    return items


def _uploaded_file(request: Received) -> bytes:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_payload(decode=True)
    raise ValueError("no uploadfile in the multipart body")


def _parse_spec(content: bytes):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    try:
        spec = yaml.safe_load(content)
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    except Exception as error:  # the real server answers any parse failure with InvalidInput
        return f"Failed to upload pipeline: invalid pipeline spec: {error}"
    return spec


class _Handler(BaseHTTPRequestHandler):
    api: FakeKfp

    def log_message(self, *args):
        pass

    def _serve(self):
        length = int(self.headers.get("content-length") or 0)
        url = urlparse(self.path)
        request = Received(self.command, url.path, parse_qs(url.query),
                           {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
        status, payload = self.api.handle(request)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

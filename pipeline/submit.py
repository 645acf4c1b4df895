"""`tfxline submit`: uploads a compiled spec to Kubeflow Pipelines and starts a run, with kfp.Client.

Before any request the spec is checked for the target (pipeline/spec_lint.py) and the run's
parameters against the spec; then the endpoint is asked for its health, so that an unreachable or
refusing endpoint is one line naming it. The spec becomes a version of the pipeline named after
the config, `<name>-<sha256 of the file>` (the same spec again reuses its version), and the run
goes into the config's experiment with the config's pipeline root (the spec's defaultPipelineRoot
is not read by open-source KFP: a run without a root goes to the cluster's default store)."""
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import time
from typing import Dict, List, Optional

from config import PipelineConfig
from pipeline.kubeflow import KubeflowError

HEALTHZ = "/apis/v2beta1/healthz"


class SubmitError(RuntimeError):
    """One line: what failed, at which endpoint, and what to check."""


@dataclasses.dataclass
class Submitted:
    pipeline_id: str
    version_id: str
    version_name: str
    version_reused: bool
    experiment_id: str
    run_id: str
    run_name: str
    url: str


def parse_parameters(spec: dict, assignments: List[str]) -> Dict[str, object]:
    """NAME=VALUE pairs, typed as the spec declares its pipeline inputs."""
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    values = {}
    for assignment in assignments:
        name, separator, text = assignment.partition("=")
        if not separator:
            raise KubeflowError(f"--param {assignment!r}: write NAME=VALUE")
        if name not in declared:
            raise KubeflowError(f"--param {name}: the pipeline has no such parameter; it has "
                                f"{', '.join(sorted(declared))}")
        kind = declared[name].get("parameterType")
        try:
            values[name] = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float}.get(kind, str)(text)
        except ValueError:
            raise KubeflowError(f"--param {name}={text}: not a {kind}") from None
    return values


def token_from(config: PipelineConfig, token_env: Optional[str]) -> Optional[str]:
    variable = token_env or config.kubeflow.token_env
    if variable is None:
        return None
    token = os.environ.get(variable, "").strip()
    if not token:
        raise SubmitError(f"the environment variable {variable} (kubeflow.token_env) holds no token; set it, e.g. "
                          f"export {variable}=$(gcloud auth print-access-token)")
    return token


def _reason(error) -> str:
    """The server's own message from a kfp_server_api ApiException, or the error's first line."""
    body = getattr(error, "body", None)
    status = getattr(error, "status", None)
    if body:
        try:
            parsed = json.loads(body)
            message = parsed.get("message") or parsed.get("error") or body
        except (ValueError, AttributeError):
            message = body if isinstance(body, str) else body.decode("utf-8", "replace")
    else:
        message = str(error)
    message = " ".join(str(message).split())[:300]
    return f"HTTP {status}: {message}" if status else message


def check_endpoint(endpoint: str, token: Optional[str], timeout: float = 10) -> None:
    """GET healthz: one SubmitError line if the endpoint cannot be reached or refuses."""
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(endpoint.rstrip("/") + HEALTHZ, headers=headers, timeout=timeout)
    except requests.RequestException as error:
        cause = error.__class__.__name__
        inner = str(getattr(error, "args", [""])[0])
        if "Connection refused" in inner:
            cause = "connection refused"
        elif "timed out" in inner.lower():
            cause = "timed out"
        elif "Name or service not known" in inner or "Failed to resolve" in inner:
            cause = "unknown host"
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {endpoint} ({cause}); check kubeflow.endpoint (or "
                          "--endpoint) and that the API is reachable from here, e.g. kubectl port-forward -n "
                          "kubeflow svc/ml-pipeline-ui 8080:80 for http://localhost:8080") from None
    if response.status_code in (401, 403):
        raise SubmitError(f"Kubeflow Pipelines at {endpoint} refused the credentials (HTTP {response.status_code}); "
                          "check the token in kubeflow.token_env (or --token-env)")
    if response.status_code != 200:
        raise SubmitError(f"{endpoint} answered HTTP {response.status_code} to {HEALTHZ}; check that kubeflow.endpoint "
                          "is the Kubeflow Pipelines API (the ml-pipeline-ui or ml-pipeline service)")


def submit(config: PipelineConfig, spec_path: str, spec: dict, endpoint: str, experiment: str,
           namespace: Optional[str], token: Optional[str], parameters: Dict[str, object],
           run_name: Optional[str] = None) -> Submitted:
    check_endpoint(endpoint, token)
    import kfp
    import kfp_server_api

    with open(spec_path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:12]
    version_name = f"{config.name}-{digest}"
    run_name = run_name or f"{config.name} {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}"
    step = "connect"
    # kfp.Client prints links and warns about its API version; the command prints its own lines.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            client = kfp.Client(host=endpoint, namespace=namespace or "kubeflow", existing_token=token)
            step = "the upload"
            pipeline_id = client.get_pipeline_id(config.name)
            if pipeline_id is None:
                # The pipeline's first version takes the pipeline's name; runs use the spec-named versions.
                pipeline_id = client.upload_pipeline(spec_path, pipeline_name=config.name,
                                                     namespace=namespace).pipeline_id
            version = _version_named(client, pipeline_id, version_name)
            reused = version is not None
            if version is None:
                version = client.upload_pipeline_version(spec_path, version_name, pipeline_id=pipeline_id)
            step = "the run"
            experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
            run = client.run_pipeline(experiment_id, run_name, pipeline_id=pipeline_id,
                                      version_id=version.pipeline_version_id, params=parameters,
                                      pipeline_root=config.kubeflow.pipeline_root)
        except kfp_server_api.ApiException as error:
            raise SubmitError(f"Kubeflow Pipelines at {endpoint} rejected {step} ({_reason(error)}); check the spec "
                              f"with tfxline compile --check --spec {spec_path} and that the backend is KFP 2.x"
                              ) from None
        except (TimeoutError, OSError) as error:
            raise SubmitError(f"Kubeflow Pipelines at {endpoint} failed during {step} ({error}); check the endpoint "
                              "and retry") from None
    return Submitted(pipeline_id, version.pipeline_version_id, version.display_name, reused, experiment_id,
                     run.run_id, run_name, f"{endpoint.rstrip('/')}/#/runs/details/{run.run_id}")


def _version_named(client, pipeline_id: str, name: str):
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    versions = client.list_pipeline_versions(pipeline_id, filter=flt).pipeline_versions or []
    return next((version for version in versions if version.display_name == name), None)

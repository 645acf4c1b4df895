"""`tfxline submit` as installed, against a local server speaking the KFP v2beta1 REST calls kfp.Client
makes (tests/kfp_api.py), and against an endpoint that is not there. What arrives is checked: the
uploaded spec's bytes, the run's parameters, pipeline root and experiment, the bearer token.
Nothing here proves a real KFP backend accepts the spec or runs it; see the spec runner for runs."""
import os
import socket
import subprocess

import pytest

from config import load_config
from pipeline import kubeflow
from tests.conftest import write_config
from tests.helpers import TFXLINE
from tests.kfp_api import FakeKfp

TOKEN = "s3cr3t-token"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("submit")
    config_path = write_config(root, kubeflow={"experiment": "nightly", "token_env": "KFP_TOKEN_FOR_TEST",
                                               "pipeline_root": "gs://bucket/tfxline/pipeline"})
    config = load_config(str(config_path))
    for target in ("kubeflow", "vertex"):
        kubeflow.write_spec(kubeflow.build_spec(config, target), str(root / f"{target}.yaml"))
    return root, config_path


def submit(workspace, *args, token=TOKEN):
    root, config_path = workspace
    env = {**os.environ, "KFP_TOKEN_FOR_TEST": token} if token else \
        {k: v for k, v in os.environ.items() if k != "KFP_TOKEN_FOR_TEST"}
    return subprocess.run([TFXLINE, "submit", "--config", str(config_path), *args], capture_output=True, text=True,
                          timeout=300, cwd=root, env=env)


def one_line(result, start: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(start), result.stderr
    return result.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_uploads_the_spec_and_starts_a_run_with_typed_parameters(workspace):
    root, _ = workspace
    with FakeKfp(token=TOKEN) as api:
        first = submit(workspace, "--spec", "kubeflow.yaml", "--endpoint", api.url, "--param", "train_epochs=2",
                       "--param", "threshold_auc=0.8", "--run-name", "nightly-1")
        assert first.returncode == 0, first.stderr
        again = submit(workspace, "--spec", "kubeflow.yaml", "--endpoint", api.url)
        assert again.returncode == 0, again.stderr
        assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api.requests)
        (pipeline,) = api.pipelines.values()
        assert pipeline["display_name"] == "taxi"
        spec_version = [v for v in api.versions[pipeline["pipeline_id"]] if v["display_name"].startswith("taxi-")]
        assert len(spec_version) == 1  # the second submit reused the version of the same spec
        assert api.uploads[spec_version[0]["pipeline_version_id"]] == (root / "kubeflow.yaml").read_bytes()
        first_run, second_run = api.runs
        assert first_run["display_name"] == "nightly-1"
        assert first_run["runtime_config"] == {"parameters": {"train_epochs": 2, "threshold_auc": 0.8},
                                               "pipeline_root": "gs://bucket/tfxline/pipeline"}
        assert second_run["runtime_config"] == {"parameters": {}, "pipeline_root": "gs://bucket/tfxline/pipeline"}
        for run in api.runs:
            assert run["pipeline_version_reference"]["pipeline_version_id"] == spec_version[0]["pipeline_version_id"]
            assert api.experiments[run["experiment_id"]]["display_name"] == "nightly"
    lines = first.stdout.splitlines()
    version_name = spec_version[0]["display_name"]
    assert lines[0] == f"tfxline submit: pipeline 'taxi' version {version_name} uploaded at {api.url}"
    assert lines[1].startswith(f"tfxline submit: run 'nightly-1' ({first_run['run_id']}) started in experiment "
                               f"'nightly': {api.url}/#/runs/details/{first_run['run_id']}")
    assert "reused (the same spec was uploaded before)" in again.stdout


def test_an_unreachable_endpoint_is_one_line_naming_it(workspace):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    line = one_line(submit(workspace, "--spec", "kubeflow.yaml", "--endpoint", endpoint),
                    f"tfxline submit: cannot reach Kubeflow Pipelines at {endpoint} (connection refused); check "
                    "kubeflow.endpoint")
    assert "kubectl port-forward" in line


def test_refused_credentials_and_a_missing_token_stop_before_any_upload(workspace):
    with FakeKfp(token=TOKEN) as api:
        one_line(submit(workspace, "--spec", "kubeflow.yaml", "--endpoint", api.url, token="wrong"),
                 f"tfxline submit: Kubeflow Pipelines at {api.url} refused the credentials (HTTP 401)")
        one_line(submit(workspace, "--spec", "kubeflow.yaml", "--endpoint", api.url, token=None),
                 "tfxline submit: the environment variable KFP_TOKEN_FOR_TEST (kubeflow.token_env) holds no token")
        assert [r.path for r in api.requests] == ["/apis/v2beta1/healthz"]


def test_a_bad_parameter_stops_before_any_request(workspace):
    with FakeKfp(token=TOKEN) as api:
        one_line(submit(workspace, "--spec", "kubeflow.yaml", "--endpoint", api.url, "--param", "epochs=3"),
                 "tfxline submit: --param epochs: the pipeline has no such parameter; it has threshold_auc, "
                 "threshold_binary_accuracy, train_epochs")
        one_line(submit(workspace, "--spec", "kubeflow.yaml", "--endpoint", api.url, "--param", "train_epochs=two"),
                 "tfxline submit: --param train_epochs=two: not a NUMBER_INTEGER")
        assert api.requests == []


def test_a_rejected_upload_is_one_line_naming_the_endpoint(workspace):
    with FakeKfp(token=TOKEN, reject_uploads="Failed to upload pipeline: the pipeline spec is invalid") as api:
        line = one_line(submit(workspace, "--spec", "kubeflow.yaml", "--endpoint", api.url),
                        f"tfxline submit: Kubeflow Pipelines at {api.url} rejected the upload (HTTP 400: Failed to "
                        "upload pipeline: the pipeline spec is invalid); check the spec with tfxline compile --check")
        assert "--spec kubeflow.yaml" in line
        assert api.runs == []


def test_a_vertex_spec_is_refused_for_kubeflow_before_upload_and_by_the_backend_when_forced(workspace):
    with FakeKfp(token=TOKEN) as api:
        one_line(submit(workspace, "--spec", "vertex.yaml", "--endpoint", api.url),
                 "tfxline submit: vertex.yaml is not a spec for target kubeflow: resolver: ")
        assert api.uploads == {}
        # Declared for Vertex, the spec passes the check; an open-source backend then refuses the run.
        one_line(submit(workspace, "--spec", "vertex.yaml", "--endpoint", api.url, "--target", "vertex"),
                 f"tfxline submit: Kubeflow Pipelines at {api.url} rejected the run (HTTP 400: Failed to create a "
                 "run: failed to compile job: resolver executors not implemented)")

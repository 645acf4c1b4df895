"""The compiled Kubeflow spec executed here the way Kubeflow Pipelines runs it (pipeline/spec_runner.py):
every task a fresh process running the command and arguments its container is given, TFX's V2
entrypoint as a subprocess of this environment's python, a directory standing in for the bucket.

Run 1 (DirectRunner in the pods, as `tfxline compile` writes for the config) is compared with the
LocalDagRunner run on the same 3,000 rows; its pushed model is served by `tfxline serve`. Run 2,
compiled with a portable Beam profile, hands every pod's Beam work to Beam's job service and worker
pool, takes a run-time parameter (train_epochs=1), and compares with run 1's blessed model, the
serving directory's stable version. Not emulated: the backend's cache, its MLMD, Kubernetes."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import requests
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from config import load_config
from metadata import runs
from pipeline import spec_runner
from tests import beam_services as services
from tests.conftest import write_config
from tests.helpers import TFXLINE, eval_examples, example_rows, overall_auc, rows_per_split, store_for
from tests.serving.conftest import Server

pytestmark = pytest.mark.e2e

BUCKET = "gs://tfxline-test-bucket/tfxline"
KUBEFLOW = {"image": "registry.example.com/ml/tfxline:test", "pipeline_root": f"{BUCKET}/pipeline",
            "data_path": f"{BUCKET}/data", "schema_path": f"{BUCKET}/schema/schema.pbtxt",
            "serving_dir": f"{BUCKET}/serving", "edge_dir": f"{BUCKET}/edge"}
BEAM_TASKS = ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator")


def compile_spec(root, name: str, data_dir, **kubeflow) -> dict:
    """`tfxline compile --check` as installed, for a config whose pods see the test bucket."""
    config_path = write_config(root / name, data={"path": str(data_dir)}, kubeflow={**KUBEFLOW, **kubeflow})
    result = subprocess.run([TFXLINE, "compile", "--check", "--config", str(config_path), "--output",
                             str(root / f"{name}.yaml")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load((root / f"{name}.yaml").read_text())


@pytest.fixture(scope="module")
def bucket(tmp_path_factory, small_taxi_dir):
    """The store with what the pods read: the data and the curated schema at the config's URIs."""
    root = tmp_path_factory.mktemp("spec_runner")
    store = spec_runner.ObjectStore(str(root / "store"))
    data = store.local(KUBEFLOW["data_path"])
    os.makedirs(data)
    shutil.copy(small_taxi_dir / "data.csv", data)
    schema = store.local(KUBEFLOW["schema_path"])
    os.makedirs(os.path.dirname(schema))
    shutil.copy(load_config(str(write_config(root / "config", data={"path": str(small_taxi_dir)}))).schema_.curated_path,
                schema)
    return root, store


@pytest.fixture(scope="module")
def first_run(bucket, small_taxi_dir):
    root, store = bucket
    # The pods' Beam work in process, as the LocalDagRunner run it is compared with.
    spec = compile_spec(root, "direct", small_taxi_dir, beam_profile="in_process")
    return spec, spec_runner.SpecRunner(spec, store, KUBEFLOW["pipeline_root"]).run()


@pytest.fixture(scope="module")
def second_run(bucket, small_taxi_dir, first_run, beam_services):
    root, store = bucket
    jobs, workers = beam_services
    config_beam = {"profile": "in_process", "profiles": {"portable": services.portable_profile(jobs, workers)}}
    config_path = write_config(root / "portable", data={"path": str(small_taxi_dir)},
                               kubeflow={**KUBEFLOW, "beam_profile": "portable"}, beam=config_beam)
    result = subprocess.run([TFXLINE, "compile", "--check", "--config", str(config_path), "--output",
                             str(root / "portable.yaml")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load((root / "portable.yaml").read_text())
    return spec, spec_runner.SpecRunner(spec, store, KUBEFLOW["pipeline_root"]).run({"train_epochs": 1})


def local(store, artifact) -> str:
    return store.local(artifact["uri"])


def test_every_task_ran_the_command_its_container_is_given(first_run, bucket):
    spec, run = first_run
    _, store = bucket
    assert list(run.tasks) == spec_runner.task_order(spec) and len(run.tasks) == 11
    for name, task in run.tasks.items():
        component = spec["components"][spec["root"]["dag"]["tasks"][name]["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        words = container["command"] + container["args"]
        assert len(task.argv) == len(words), name
        assert task.argv[0] == sys.executable and words[0] == "python"
        for given, word in zip(task.argv[1:], words[1:]):
            if word == "{{$}}":  # the whole ExecutorInput, as KFP's launcher substitutes it
                json_format.Parse(given, pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=False)
            else:
                assert given == store.local(word), name
        # KFP's own executor-logs output is there and holds the task's log.
        assert os.path.getsize(local(store, task.executor_input["outputs"]["artifacts"]["executor-logs"]
                                     ["artifacts"][0])) > 0


def test_the_artifacts_equal_a_local_run_on_the_same_data(first_run, bucket, taxi_run):
    _, run = first_run
    _, store = bucket
    direct = runs.latest_run(store_for(taxi_run.config), taxi_run.config.name)
    assert rows_per_split(local(store, run.artifact("StatisticsGen", "statistics"))) == \
        rows_per_split(direct["StatisticsGen"].output("statistics").uri)
    with open(os.path.join(local(store, run.artifact("ImportSchemaGen", "schema")), "schema.pbtxt")) as a, \
            open(os.path.join(direct["ImportSchemaGen"].output("schema").uri, "schema.pbtxt")) as b:
        assert a.read() == b.read()
    assert overall_auc(local(store, run.artifact("Evaluator", "evaluation"))) == \
        pytest.approx(overall_auc(direct["Evaluator"].output("evaluation").uri), abs=1e-6)
    assert run.artifact("ServingBaseline", "model")["metadata"]["serving_version"] == 0  # nothing served yet
    assert run.artifact("Evaluator", "blessing")["metadata"]["blessed"] == 1


def test_the_pushed_model_loads_in_tfxline_serve(first_run, bucket, taxi_run, tmp_path):
    _, run = first_run
    _, store = bucket
    pushed = run.artifact("Pusher", "pushed_model")["metadata"]
    assert pushed["pushed"] == 1 and pushed["pushed_destination"].startswith(f"{BUCKET}/serving/taxi/")
    base = store.local(f"{BUCKET}/serving/taxi")
    server = Server([f"--model_base_path={base}", "--model_name=taxi"], tmp_path)
    try:
        server.wait_ready("/v1/models/taxi")
        status = requests.get(server.url + "/v1/models/taxi", timeout=10).json()
        assert status["model_version_status"][0]["version"] == pushed["pushed_version"]
        rows = example_rows(eval_examples(taxi_run.config, limit=3), taxi_run.config.feature_names)
        answer = requests.post(server.url + "/v1/models/taxi:predict", timeout=30,
                               json={"signature_name": "serving_raw", "instances": rows}).json()
        assert len(answer["predictions"]) == 3 and all(0 <= p[0] <= 1 for p in answer["predictions"])
    finally:
        server.stop()


def test_the_second_run_compares_with_the_first_runs_blessed_model(first_run, second_run, bucket):
    _, first = first_run
    _, second = second_run
    _, store = bucket
    first_version = first.artifact("Pusher", "pushed_model")["metadata"]["pushed_version"]
    assert second.artifact("ServingBaseline", "model")["metadata"]["serving_version"] == int(first_version)
    evaluation = local(store, second.artifact("Evaluator", "evaluation"))
    # The baseline is the first run's model: its AUC there is the first run's candidate AUC.
    assert overall_auc(evaluation, "baseline") == \
        pytest.approx(overall_auc(local(store, first.artifact("Evaluator", "evaluation"))), abs=1e-6)


def test_a_run_parameter_override_reaches_the_trainer(first_run, second_run, bucket):
    _, first = first_run
    spec, second = second_run
    _, store = bucket
    assert spec["root"]["inputDefinitions"]["parameters"]["train_epochs"]["defaultValue"] == 5
    assert second.tasks["Trainer"].executor_input["inputs"]["parameterValues"]["epochs"] == 1
    assert first.artifact("Trainer", "model")["metadata"]["epochs"] == 5
    assert second.artifact("Trainer", "model")["metadata"]["epochs"] == 1
    evaluation = local(store, second.artifact("Evaluator", "evaluation"))
    assert overall_auc(evaluation, "candidate") != overall_auc(evaluation, "baseline")


def test_the_pods_hand_their_beam_work_to_the_job_service(second_run, first_run, bucket, beam_services):
    jobs, workers = beam_services
    _, second = second_run
    _, first = first_run
    _, store = bucket
    for name in BEAM_TASKS:
        argv = second.tasks[name].argv
        assert "--runner=PortableRunner" in argv and f"--job_endpoint={jobs.endpoint}" in argv, name
        assert "--environment_type=EXTERNAL" in argv and f"--environment_config={workers.endpoint}" in argv
        assert "--runner=DirectRunner" in first.tasks[name].argv
    assert jobs.log_text().count(f"Requesting worker at {workers.endpoint}") >= len(BEAM_TASKS)
    assert rows_per_split(local(store, second.artifact("StatisticsGen", "statistics"))) == \
        rows_per_split(local(store, first.artifact("StatisticsGen", "statistics")))


def test_a_failing_task_stops_the_run_with_its_log(bucket, first_run, tmp_path):
    spec, _ = first_run
    _, store = bucket
    broken = json.loads(json.dumps(spec))
    tasks = broken["root"]["dag"]["tasks"]
    broken["root"]["dag"]["tasks"] = {"ImportSchemaGen": tasks["ImportSchemaGen"]}
    parameters = broken["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"]["parameters"]
    parameters["schema_file"]["runtimeValue"]["constant"] = f"{BUCKET}/schema/missing.pbtxt"
    with pytest.raises(spec_runner.SpecRunError, match="task ImportSchemaGen failed .*its log.*ends"):
        spec_runner.SpecRunner(broken, spec_runner.ObjectStore(str(tmp_path / "store")),
                               KUBEFLOW["pipeline_root"]).run()

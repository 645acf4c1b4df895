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


def compile_spec(root, name: str, data_dir, beam=None, **kubeflow):
    """`tfxline compile --check` as installed, for a config whose pods see the test bucket."""
    config_path = write_config(root / name, data={"path": str(data_dir)}, kubeflow={**KUBEFLOW, **kubeflow},
                               **({"beam": beam} if beam else {}))
    spec_path = root / f"{name}.yaml"
    result = subprocess.run([TFXLINE, "compile", "--check", "--config", str(config_path), "--output", str(spec_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return config_path, spec_path, yaml.safe_load(spec_path.read_text())


def dry_run(config_path, spec_path, store, *args):
    """`tfxline dry-run` as installed; the run as its record has it."""
    result = subprocess.run([TFXLINE, "dry-run", "--config", str(config_path), "--spec", str(spec_path), "--store",
                             store.root, *args], capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = next(line for line in result.stdout.splitlines() if "its record:" in line).split("its record: ")[1]
    return spec_runner.SpecRun.read(record), result.stdout


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    root = tmp_path_factory.mktemp("spec_runner")
    return root, spec_runner.ObjectStore(str(root / "store"))


@pytest.fixture(scope="module")
def first_run(bucket, small_taxi_dir):
    root, store = bucket
    # The pods' Beam work in process, as in the LocalDagRunner run it is compared with.
    config_path, spec_path, spec = compile_spec(root, "direct", small_taxi_dir, beam_profile="in_process")
    run, output = dry_run(config_path, spec_path, store, "--seed")
    assert f"tfxline dry-run: seeded {KUBEFLOW['data_path']}" in output
    return spec, run


@pytest.fixture(scope="module")
def second_run(bucket, small_taxi_dir, first_run, beam_services):
    root, store = bucket
    jobs, workers = beam_services
    beam = {"profile": "in_process", "profiles": {"portable": services.portable_profile(jobs, workers)}}
    config_path, spec_path, spec = compile_spec(root, "portable", small_taxi_dir, beam=beam, beam_profile="portable")
    run, _ = dry_run(config_path, spec_path, store, "--param", "train_epochs=1")
    return spec, run


def local(store, artifact) -> str:
    return store.local(artifact["uri"])


def test_every_task_ran_the_command_its_container_is_given(first_run, bucket):
    spec, run = first_run
    _, store = bucket
    assert list(run.tasks) == spec_runner.task_order(spec) and len(run.tasks) == 14
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
    # The drift gate compared with the first run's training data, published beside its version.
    assert first.artifact("DriftBaselinePublisher", "baseline")["metadata"]["published"] == 1
    assert second.artifact("ServingBaseline", "drift_baseline")["metadata"]["serving_version"] == int(first_version)
    assert second.artifact("DriftGate", "report")["metadata"]["has_baseline"] == 1


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


def test_the_vertex_spec_runs_exampleGens_driver_before_its_executor(bucket, small_taxi_dir):
    """Vertex runs a container's preCacheCheck (TFX's ExampleGen driver, here a plain subprocess
    too); it fingerprints the input files and hands the executor the resolved span."""
    root, store = bucket
    config_path, _, spec = compile_spec(root, "vertex", small_taxi_dir, target="vertex", beam_profile="in_process")
    spec_runner.seed(store, load_config(str(config_path)))
    tasks = spec["root"]["dag"]["tasks"]
    spec["root"]["dag"]["tasks"] = {"CsvExampleGen": tasks["CsvExampleGen"]}
    run = spec_runner.SpecRunner(spec, store, KUBEFLOW["pipeline_root"], run_hooks=True).run()
    examples = run.artifact("CsvExampleGen", "examples")
    assert sorted(os.listdir(local(store, examples))) == ["Split-eval", "Split-train"]
    logs = run.tasks["CsvExampleGen"].executor_input["outputs"]["artifacts"]["executor-logs"]["artifacts"][0]
    with open(local(store, logs)) as handle:
        log = handle.read()
    # The driver's lines, then the executor given the exec properties the driver wrote.
    assert "Calculated span: 0" in log and "Calculated fingerprint: split:single_split" in log
    assert "'input_fingerprint': 'split:single_split" in log.split("Starting executor")[0]


def test_resolver_tasks_answer_from_earlier_runs_as_vertex_does(tmp_path):
    """The two queries TFX's latest-blessed-model resolver compiles to, on a record of earlier runs."""
    store = spec_runner.ObjectStore(str(tmp_path))
    model = {"type": {"instanceSchema": "title: tfx.Model\ntype: object\n"}}
    blessing = {"type": {"instanceSchema": "title: tfx.ModelBlessing\ntype: object\n"}}
    runner = spec_runner.SpecRunner({"schemaVersion": "2.1.0"}, store, "gs://b/root")
    runner._record("run-1", "Trainer", {"model": [{**model, "name": "run-1/Trainer/model", "uri": "gs://b/m1"}]})
    runner._record("run-1", "Evaluator", {"blessing": [{**blessing, "name": "run-1/Evaluator/blessing",
                                                        "metadata": {"blessed": 1.0,
                                                                     "current_model_id": "run-1/Trainer/model"}}]})
    runner._record("run-2", "Trainer", {"model": [{**model, "name": "run-2/Trainer/model", "uri": "gs://b/m2"}]})
    runner._record("run-2", "Evaluator", {"blessing": [{**blessing, "name": "run-2/Evaluator/blessing",
                                                        "metadata": {"blessed": 0.0,
                                                                     "current_model_id": "run-2/Trainer/model"}}]})
    blessed = runner._query('schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1',
                            {}, "blessing-resolver")
    assert [artifact["name"] for artifact in blessed] == ["run-1/Evaluator/blessing"]
    found = runner._query('schema_title="tfx.Model" AND state=LIVE AND '
                          'name="{{$.inputs.artifacts[\'input\'].metadata[\'current_model_id\']}}"',
                          {"input": blessed}, "model-resolver")
    assert [artifact["uri"] for artifact in found] == ["gs://b/m1"]
    assert runner._query('schema_title="tfx.Model" AND state=LIVE AND '
                         'name="{{$.inputs.artifacts[\'input\'].metadata[\'current_model_id\']}}"',
                         {"input": []}, "model-resolver") == []

"""`tfxline compile` as installed: a checked spec for open-source Kubeflow Pipelines (schema 2.1, no
resolver, run-time parameters with defaults, only the pods' paths), the Vertex spec with TFX's
resolver, and checking an existing spec file for a target."""
import subprocess

import pytest
import yaml

from config import load_config
from tests.conftest import TAXI_CONFIG
from tests.helpers import TFXLINE

pytestmark = pytest.mark.e2e
TASKS = {"CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "AnomalyGate", "DataProfiler",
         "ServingBaseline", "DriftGate", "Transform", "Trainer", "Evaluator", "Pusher", "DriftBaselinePublisher",
         "TFLiteExport"}


def compile_(cwd, *args):
    return subprocess.run([TFXLINE, "compile", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_compiles_a_checked_spec_for_open_source_kubeflow(tmp_path):
    config = load_config(TAXI_CONFIG)
    result = compile_(tmp_path, "--check", "--output", "taxi.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "tfxline compile: Kubeflow Pipelines spec for target kubeflow (schema 2.1.0, 14 tasks, checked) written to "
        f"{tmp_path / 'taxi.yaml'}",
        "  parameters: threshold_auc=0.75, threshold_binary_accuracy=0.75, train_epochs=5"]
    spec = yaml.safe_load((tmp_path / "taxi.yaml").read_text())
    assert spec["schemaVersion"] == "2.1.0" and spec["pipelineInfo"]["name"] == "taxi"
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == TASKS
    assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]["producerTask"] == \
        "ServingBaseline"
    assert {"AnomalyGate", "DriftGate"} <= set(tasks["Transform"]["dependentTasks"])
    # No trigger conditions: each would need an input its task declares.
    assert not any("triggerPolicy" in task for task in tasks.values())
    assert tasks["DriftGate"]["inputs"]["artifacts"]["baseline"]["taskOutputArtifact"]["producerTask"] == \
        "ServingBaseline"
    assert not any("resolver" in executor for executor in spec["deploymentSpec"]["executors"].values())
    assert spec["root"]["inputDefinitions"]["parameters"]["train_epochs"] == {
        "parameterType": "NUMBER_INTEGER", "defaultValue": 5, "isOptional": True}
    assert tasks["Trainer"]["inputs"]["parameters"]["epochs"] == {"componentInputParameter": "train_epochs"}
    assert tasks["Evaluator"]["inputs"]["parameters"]["threshold_auc"] == {"componentInputParameter": "threshold_auc"}
    text = (tmp_path / "taxi.yaml").read_text()
    for path in (config.kubeflow.data_path, config.kubeflow.schema_path, config.kubeflow.serving_dir,
                 config.kubeflow.edge_dir):
        assert path in text
    assert spec["defaultPipelineRoot"] == config.kubeflow.pipeline_root
    checked = compile_(tmp_path, "--spec", "taxi.yaml")
    assert checked.returncode == 0 and checked.stdout.strip() == \
        "tfxline compile: taxi.yaml passes every check for target kubeflow", checked.stderr


def test_the_vertex_spec_keeps_the_resolver_and_is_refused_for_open_source_kubeflow(tmp_path):
    result = compile_(tmp_path, "--target", "vertex", "--output", "vertex.yaml")
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load((tmp_path / "vertex.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert {"latest_blessed_model_resolver-model-blessing-resolver", "latest_blessed_model_resolver-model-resolver"} \
        <= set(tasks)
    # ServingBaseline stays for the drift baseline; the Evaluator's baseline model is the resolver's.
    assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]["producerTask"] == \
        "latest_blessed_model_resolver-model-resolver"
    refused = compile_(tmp_path, "--spec", "vertex.yaml", "--target", "kubeflow")
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("tfxline compile: vertex.yaml is not a spec for target kubeflow: resolver: ")
    assert "open-source Kubeflow Pipelines rejects" in refused.stderr


def test_an_unwritable_output_is_one_line_and_verbose_shows_the_traceback(tmp_path):
    argv = ["--output", "/proc/no-such-dir/taxi.yaml"]
    quiet, loud = compile_(tmp_path, *argv), compile_(tmp_path, *argv, "--verbose")
    assert quiet.returncode == 1 and len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    assert quiet.stderr.startswith("tfxline compile: /proc/no-such-dir is not a directory")
    assert loud.returncode == 1 and "Traceback" in loud.stderr
    assert not (tmp_path / "taxi.yaml").exists()

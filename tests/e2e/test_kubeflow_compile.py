"""`tfxline compile` as installed writes a Kubeflow Pipelines V2 spec (TFX 1.16 has no V1 runner)."""
import subprocess

import pytest
import yaml

from config import load_config
from tests.conftest import TAXI_CONFIG
from tests.helpers import TFXLINE

pytestmark = pytest.mark.e2e


def test_compiles_to_a_v2_pipeline_spec(tmp_path):
    config = load_config(TAXI_CONFIG)
    result = subprocess.run([TFXLINE, "compile", "--output", "taxi.yaml"], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tfxline compile: Kubeflow Pipelines V2 spec written to {tmp_path / 'taxi.yaml'}"
    text = (tmp_path / "taxi.yaml").read_text()
    spec = yaml.safe_load(text)
    assert spec["pipelineInfo"]["name"] == "taxi"
    tasks = spec["root"]["dag"]["tasks"]
    for component in ("CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "AnomalyGate",
                      "DataProfiler", "DriftGate", "Transform", "Trainer", "Evaluator", "Pusher",
                      "DriftBaselinePublisher", "TFLiteExport", "latest_drift_baseline_resolver"):
        assert component in tasks, component
    assert {"AnomalyGate", "DriftGate"} <= set(tasks["Transform"]["dependentTasks"])
    # The drift baseline is published only when the Pusher published a new version.
    assert "['new_version'] == 1" in tasks["DriftBaselinePublisher"]["triggerPolicy"]["condition"]
    assert any(name.startswith("latest_blessed_model_resolver") for name in tasks)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {config.kubeflow.image}
    assert config.kubeflow.pipeline_root in text and config.kubeflow.data_path in text


def test_an_error_inside_a_library_is_one_line_and_verbose_shows_the_traceback(tmp_path):
    # TFX's runner writes the spec with TensorFlow's file API, which fails on a directory that cannot exist.
    argv = [TFXLINE, "compile", "--output", "/proc/no-such-dir/taxi.yaml"]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    loud = subprocess.run(argv + ["--verbose"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert quiet.returncode == 1 and len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    assert quiet.stderr.startswith("tfxline compile: NotFoundError: /proc/no-such-dir")
    assert quiet.stderr.strip().endswith("(run again with --verbose for the traceback)")
    assert loud.returncode == 1 and "Traceback" in loud.stderr

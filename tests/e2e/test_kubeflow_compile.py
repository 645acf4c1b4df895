"""The pipeline compiles to a Kubeflow Pipelines V2 spec (TFX 1.16 has no V1 runner)."""
import yaml

from config import load_config
from pipeline.kubeflow import compile_pipeline
from tests.conftest import TAXI_CONFIG


def test_compiles_to_a_v2_pipeline_spec(tmp_path):
    config = load_config(TAXI_CONFIG)
    path = compile_pipeline(config, str(tmp_path / "taxi.yaml"))
    with open(path) as handle:
        spec = yaml.safe_load(handle)
    assert spec["pipelineInfo"]["name"] == "taxi"
    tasks = spec["root"]["dag"]["tasks"]
    for component in ("CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "AnomalyGate",
                      "Transform", "Trainer", "Evaluator", "Pusher", "TFLiteExport"):
        assert component in tasks, component
    assert "AnomalyGate" in tasks["Transform"]["dependentTasks"]
    assert any(name.startswith("latest_blessed_model_resolver") for name in tasks)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {config.kubeflow.image}
    text = open(path).read()
    assert config.kubeflow.pipeline_root in text and config.kubeflow.data_path in text

"""Configs that would compile to a spec the cluster cannot run are refused by `tfxline compile` in one
line naming the field, before TFX is imported and before anything is written."""
import subprocess

import pytest

from tests.conftest import write_config
from tests.helpers import TFXLINE


@pytest.mark.parametrize("overrides, problem", [
    ({"kubeflow": {"pipeline_root": "/home/me/pipeline"}},
     "kubeflow.pipeline_root '/home/me/pipeline' is a path on this machine"),
    ({"kubeflow": {"pipeline_root": "hdfs://namenode/pipeline"}},
     "kubeflow.pipeline_root 'hdfs://namenode/pipeline': KFP's launcher stores artifacts in gs://, s3://, minio:// "
     "only; use a bucket"),
    ({"kubeflow": {"data_path": "file:///data/taxi"}}, "kubeflow.data_path 'file:///data/taxi' is a file:// URI"),
    ({"kubeflow": {"serving_dir": "tfxline_output/serving"}},
     "kubeflow.serving_dir 'tfxline_output/serving' is a path"),
    ({"kubeflow": {"image": None}}, "kubeflow.image is not set: build the Dockerfile's image, push it"),
    ({"kubeflow": {"image": "Not An Image"}}, "kubeflow.image 'Not An Image' is not an image reference"),
    ({"kubeflow": {"schema_path": None}}, "kubeflow.schema_path is not set: the pods need the curated schema"),
    ({"data": {"span_pattern": "span-{SPAN}/*.csv"}}, "data.span_pattern needs ExampleGen's driver, which "
                                                      "open-source Kubeflow Pipelines never runs"),
])
def test_a_config_the_pods_cannot_run_is_refused_in_one_line(tmp_path, overrides, problem):
    path = write_config(tmp_path, **overrides)
    result = subprocess.run([TFXLINE, "compile", "--config", str(path), "--output", "spec.yaml"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"tfxline compile: {problem}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "spec.yaml").exists()


def test_the_span_pattern_is_fine_for_vertex_which_runs_the_driver(tmp_path):
    from config import load_config
    from pipeline import kubeflow

    (tmp_path / "data" / "span-1").mkdir(parents=True)
    config = load_config(str(write_config(tmp_path, data={"path": str(tmp_path / "data"),
                                                          "span_pattern": "span-{SPAN}/*.csv"})))
    kubeflow.check_config(config, "vertex")
    with pytest.raises(kubeflow.KubeflowError, match="span_pattern"):
        kubeflow.check_config(config, "kubeflow")

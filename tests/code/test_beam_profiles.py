"""Beam profiles (config/beam.py): each runner's flags as Beam itself parses them, every profile
validated with one line naming the field, per-component flags on their component only."""
import subprocess

import pytest
from apache_beam.options.pipeline_options import (DirectOptions, FlinkRunnerOptions, GoogleCloudOptions,
                                                  PipelineOptions, PortableOptions, SparkRunnerOptions,
                                                  StandardOptions, WorkerOptions)

from config import ConfigError, beam, load_config
from tests.conftest import write_config
from tests.helpers import TFXLINE

IMAGE = "registry.example.com/ml/tfxline:1.0"


def profile_config(tmp_path, profile: dict, **more):
    path = write_config(tmp_path, beam={"profile": "chosen", "profiles": {"chosen": profile}, **more},
                        kubeflow={"image": IMAGE, "schema_path": "gs://b/schema.pbtxt"})
    return load_config(str(path))


def parsed(args):
    return PipelineOptions(args)


def test_built_in_profiles_run_in_process_and_on_every_core(tmp_path):
    config = load_config(str(write_config(tmp_path)))
    in_process = parsed(beam.pipeline_args(config, "in_process"))
    assert in_process.view_as(StandardOptions).runner == "DirectRunner"
    assert in_process.view_as(DirectOptions).direct_running_mode == "in_memory"
    assert in_process.view_as(DirectOptions).direct_num_workers == 1
    every_core = parsed(beam.pipeline_args(config, "multi_process"))
    assert every_core.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert every_core.view_as(DirectOptions).direct_num_workers == 0


def test_direct_runner_with_n_workers(tmp_path):
    config = profile_config(tmp_path, {"runner": "DirectRunner", "workers": 2,
                                       "extra_args": ["--max_cache_memory_usage_mb=64"]})
    options = parsed(beam.pipeline_args(config))
    assert options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.get_all_options()["max_cache_memory_usage_mb"] == 64


def test_portable_runner_with_a_worker_pool(tmp_path):
    config = profile_config(tmp_path, {"runner": "PortableRunner", "job_endpoint": "localhost:8099",
                                       "environment_type": "EXTERNAL", "environment_config": "localhost:50000"})
    options = parsed(beam.pipeline_args(config))
    assert options.view_as(StandardOptions).runner == "PortableRunner"
    assert options.view_as(PortableOptions).job_endpoint == "localhost:8099"
    assert options.view_as(PortableOptions).environment_type == "EXTERNAL"
    assert options.view_as(PortableOptions).environment_config == "localhost:50000"


def test_docker_environment_defaults_to_the_pipeline_image(tmp_path):
    config = profile_config(tmp_path, {"runner": "PortableRunner", "job_endpoint": "jobserver:8099",
                                       "environment_type": "DOCKER"})
    options = parsed(beam.pipeline_args(config, image=IMAGE))
    assert options.view_as(PortableOptions).environment_config == IMAGE


def test_flink_with_a_running_job_server_or_the_jar(tmp_path):
    served = profile_config(tmp_path / "a", {"runner": "FlinkRunner", "job_endpoint": "flink-jobserver:8099",
                                             "flink_master": "flink-jobmanager:8081", "flink_version": "1.17",
                                             "environment_type": "EXTERNAL", "environment_config": "localhost:50000"})
    options = parsed(beam.pipeline_args(served))
    assert options.view_as(StandardOptions).runner == "PortableRunner"
    assert options.view_as(FlinkRunnerOptions).flink_version == "1.17"
    assert options.view_as(FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"
    jar = profile_config(tmp_path / "b", {"runner": "FlinkRunner", "job_server_jar": "/opt/flink-job-server.jar",
                                          "flink_version": 1.18, "environment_type": "LOOPBACK", "parallelism": 4})
    options = parsed(beam.pipeline_args(jar))
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert options.view_as(FlinkRunnerOptions).flink_job_server_jar == "/opt/flink-job-server.jar"
    assert options.view_as(FlinkRunnerOptions).flink_version == "1.18"
    assert options.view_as(FlinkRunnerOptions).parallelism == 4


def test_the_flink_versions_are_beams_own():
    assert beam.FLINK_VERSIONS == tuple(FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS)
    with pytest.raises(SystemExit):  # Beam's own parser refuses any other version
        PipelineOptions(["--flink_version=1.12"]).view_as(FlinkRunnerOptions)


def test_spark_with_a_jar(tmp_path):
    config = profile_config(tmp_path, {"runner": "SparkRunner", "job_server_jar": "https://example.com/spark.jar",
                                       "spark_master_url": "spark://spark-master:7077",
                                       "environment_type": "EXTERNAL", "environment_config": "localhost:50000"})
    options = parsed(beam.pipeline_args(config))
    assert options.view_as(StandardOptions).runner == "SparkRunner"
    assert options.view_as(SparkRunnerOptions).spark_master_url == "spark://spark-master:7077"
    assert options.view_as(SparkRunnerOptions).spark_job_server_jar == "https://example.com/spark.jar"


def test_dataflow_workers_run_the_pipeline_image(tmp_path):
    config = profile_config(tmp_path, {"runner": "DataflowRunner", "project": "my-project", "region": "europe-west4",
                                       "temp_location": "gs://bucket/tmp", "max_num_workers": 8})
    options = parsed(beam.pipeline_args(config, image=IMAGE))
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(GoogleCloudOptions).project == "my-project"
    assert options.view_as(GoogleCloudOptions).region == "europe-west4"
    assert options.view_as(GoogleCloudOptions).temp_location == "gs://bucket/tmp"
    assert options.view_as(WorkerOptions).sdk_container_image == IMAGE
    assert options.view_as(WorkerOptions).max_num_workers == 8
    with pytest.raises(ValueError, match="needs kubeflow.image"):
        beam.pipeline_args(config)


@pytest.mark.parametrize("profile, expected", [
    ({"runner": "SamzaRunner"}, "does not match any of the expected tags"),
    ({"runner": "DirectRunner", "workers": -1}, "workers"),
    ({"runner": "PortableRunner"}, "job_endpoint"),
    ({"runner": "PortableRunner", "job_endpoint": "nohost"}, "is not host:port"),
    ({"runner": "PortableRunner", "job_endpoint": "localhost:8099"}, "EXTERNAL needs environment_config"),
    ({"runner": "PortableRunner", "job_endpoint": "localhost:8099", "environment_type": "PROCESS"},
     "PROCESS needs environment_config"),
    ({"runner": "PortableRunner", "job_endpoint": "localhost:8099", "environment_type": "SUBPROCESS"},
     "environment_type"),
    ({"runner": "FlinkRunner", "flink_version": "1.12", "job_endpoint": "localhost:8099",
      "environment_type": "LOOPBACK"}, "Flink 1.15, 1.16, 1.17, 1.18 only"),
    ({"runner": "FlinkRunner", "flink_version": 1.10, "job_endpoint": "localhost:8099",
      "environment_type": "LOOPBACK"}, "'1.1' is not supported"),
    ({"runner": "FlinkRunner", "environment_type": "LOOPBACK"}, "exactly one of job_endpoint"),
    ({"runner": "SparkRunner", "job_endpoint": "a:1", "job_server_jar": "x.jar", "environment_type": "LOOPBACK"},
     "exactly one of job_endpoint"),
    ({"runner": "DataflowRunner", "project": "p", "region": "r", "temp_location": "/tmp/x"}, "gs:// location"),
    ({"runner": "DirectRunner", "extra_args": ["--runner=DataflowRunner"]}, "--runner is set by the profile"),
    ({"runner": "DirectRunner", "extra_args": ["--direct_num_workers=4"]}, "--direct_num_workers is set by"),
    ({"runner": "DirectRunner", "extra_args": ["direct_num_workers=4"]}, "is not a --flag"),
])
def test_a_bad_profile_is_one_line(tmp_path, profile, expected):
    with pytest.raises(ConfigError) as error:
        profile_config(tmp_path, profile)
    assert expected in str(error.value) and "beam.profiles.chosen" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_dataflow_image_other_than_the_pipelines_is_refused(tmp_path):
    config = profile_config(tmp_path, {"runner": "DataflowRunner", "project": "p", "region": "r",
                                       "temp_location": "gs://b/t",
                                       "sdk_container_image": "apache/beam_python3.10_sdk"})
    with pytest.raises(ValueError, match="Dataflow's workers must run the pipeline image"):
        beam.pipeline_args(config, image=IMAGE)


def test_unknown_profile_names_and_components_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="beam.profile: no Beam profile 'fast'; known: in_process, multi_process"):
        load_config(str(write_config(tmp_path / "a", beam={"profile": "fast"})))
    with pytest.raises(ConfigError, match="kubeflow.beam_profile: no Beam profile 'pods'"):
        load_config(str(write_config(tmp_path / "b", kubeflow={"beam_profile": "pods"})))
    with pytest.raises(ConfigError, match="'Trainer' is not one of the pipeline's Beam components"):
        load_config(str(write_config(tmp_path / "c", beam={"component_args": {"Trainer": ["--x=1"]}})))


def test_component_args_come_last_on_their_component_only(tmp_path):
    from pipeline.pipeline import create_pipeline

    beam_settings = {"component_args": {"Evaluator": ["--direct_num_workers=2"]}}
    config = load_config(str(write_config(tmp_path, beam=beam_settings)))
    assert beam.pipeline_args(config, component="Evaluator")[-1] == "--direct_num_workers=2"
    pipeline = create_pipeline(config, pipeline_root=str(tmp_path / "root"), data_path=config.data.path,
                               schema_path=config.schema_.curated_path, serving_dir=str(tmp_path / "serving"),
                               edge_dir=str(tmp_path / "edge"))
    components = {component.id: component for component in pipeline.components}
    evaluator_args = components["Evaluator"].executor_spec.beam_pipeline_args
    assert evaluator_args[-1] == "--direct_num_workers=2"
    # Beam takes the last of a repeated flag: the Evaluator runs on 2 workers, the others in process.
    assert parsed(evaluator_args).view_as(DirectOptions).direct_num_workers == 2
    assert "--direct_num_workers=2" not in components["Transform"].executor_spec.beam_pipeline_args


def test_an_unknown_runner_stops_tfxline_run_in_one_line(tmp_path):
    path = write_config(tmp_path, beam={"profile": "x", "profiles": {"x": {"runner": "SamzaRunner"}}})
    result = subprocess.run([TFXLINE, "run", "--config", str(path)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("tfxline: config error:") and "beam.profiles.x" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

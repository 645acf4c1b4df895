"""The spec linter (pipeline/spec_lint.py): the compiled specs pass every rule, and for each rule a
deliberately broken copy of the spec fails that rule and no other."""
import copy
import json

import pytest

from config import load_config
from pipeline import kubeflow, spec_lint
from tests.conftest import TAXI_CONFIG

IMAGE = "tfxline:latest"


@pytest.fixture(scope="module")
def config():
    return load_config(TAXI_CONFIG)


@pytest.fixture(scope="module")
def specs(config):
    return {target: kubeflow.build_spec(config, target, IMAGE) for target in ("kubeflow", "vertex")}


def rules_broken(spec, config, target="kubeflow"):
    return sorted({problem.rule for problem in spec_lint.lint(spec, config, target, IMAGE)})


def broken(specs, change, target="kubeflow"):
    spec = copy.deepcopy(specs[target])
    change(spec)
    return spec


def executor(spec, task):
    return spec["deploymentSpec"]["executors"][f"{task}_executor"]


def test_the_compiled_specs_pass_every_rule(specs, config):
    for target, spec in specs.items():
        assert spec_lint.lint(spec, config, target, IMAGE) == [], target
    assert set(spec_lint.RULES) == {"parse", "schema", "resolver", "image", "command", "artifact_types",
                                    "parameters", "paths", "caching", "edges"}


def test_parse_rule_refuses_fields_a_pipeline_spec_does_not_have(specs, config):
    spec = broken(specs, lambda s: s["root"]["dag"]["tasks"]["Trainer"].update(retries=3))
    assert rules_broken(spec, config) == ["parse"]


def test_schema_rule_refuses_schema_2_0(specs, config):
    assert rules_broken(broken(specs, lambda s: s.update(schemaVersion="2.0.0")), config) == ["schema"]

    def constant_value(spec):
        parameter = spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]["push_destination"]
        parameter["runtimeValue"] = {"constantValue": {"stringValue": parameter["runtimeValue"]["constant"]}}
    problems = spec_lint.lint(broken(specs, constant_value), config, "kubeflow", IMAGE)
    assert {p.rule for p in problems} >= {"schema"}
    assert any("constantValue" in p.message and "Pusher" in p.where for p in problems)


def test_resolver_rule_refuses_a_vertex_spec_for_open_source_kubeflow(specs, config):
    problems = spec_lint.lint(specs["vertex"], config, "kubeflow", IMAGE)
    assert problems[0].rule == "resolver" and "latest_blessed_model_resolver" in problems[0].where
    # Vertex runs ExampleGen's driver, which fingerprints the data, so its ExampleGen may be cached.
    assert {p.rule for p in problems} == {"resolver", "edges", "caching"}
    assert rules_broken(specs["vertex"], config, "vertex") == []


def test_image_rule_refuses_another_image(specs, config):
    spec = broken(specs, lambda s: executor(s, "Trainer")["container"].update(image="gcr.io/tfx-oss-public/tfx:1.16.0"))
    assert rules_broken(spec, config) == ["image"]


@pytest.mark.parametrize("change", [
    lambda s: executor(s, "Trainer")["container"].update(command=["python", "-m", "trainer.run"]),
    lambda s: executor(s, "Trainer")["container"]["args"].__setitem__(1, "trainer.no_such.Executor"),
    lambda s: executor(s, "Trainer")["container"]["args"].__setitem__(1, "config.PipelineConfig"),
    lambda s: executor(s, "Pusher")["container"]["args"].remove("{{$}}"),
    lambda s: executor(s, "CsvExampleGen")["container"]["lifecycle"]["preCacheCheck"].update(command=["sh", "-c"]),
], ids=["entrypoint", "missing executor", "not an executor", "no executor input", "driver"])
def test_command_rule_refuses_anything_but_tfxs_entrypoints(specs, config, change):
    assert rules_broken(broken(specs, change), config) == ["command"]


def test_artifact_types_rule_refuses_a_type_the_pods_cannot_import(specs, config):
    def rename(spec):
        report = spec["components"]["AnomalyGate"]["outputDefinitions"]["artifacts"]["report"]["artifactType"]
        report["instanceSchema"] = report["instanceSchema"].replace("tfxline.AnomalyReport", "tfxlinex.AnomalyReport")
    assert rules_broken(broken(specs, rename), config) == ["artifact_types"]


@pytest.mark.parametrize("change", [
    lambda s: s["root"]["inputDefinitions"]["parameters"]["train_epochs"].pop("defaultValue"),
    lambda s: s["root"]["inputDefinitions"]["parameters"]["threshold_auc"].update(defaultValue=0.5),
    lambda s: s["root"]["inputDefinitions"]["parameters"]["train_epochs"].pop("isOptional"),
    lambda s: s["root"]["inputDefinitions"]["parameters"]["train_epochs"].update(parameterType="STRING"),
    lambda s: s["root"]["inputDefinitions"]["parameters"].pop("threshold_binary_accuracy"),
], ids=["no default", "other default", "not optional", "type", "undeclared"])
def test_parameters_rule_needs_declared_defaults(specs, config, change):
    assert rules_broken(broken(specs, change), config) == ["parameters"]


def _custom_config_with_a_local_path(spec):
    parameter = spec["root"]["dag"]["tasks"]["Transform"]["inputs"]["parameters"]["custom_config"]["runtimeValue"]
    custom_config = json.loads(parameter["constant"])
    custom_config["config"]["data"] = {"path": "/home/someone/taxi/data"}
    parameter["constant"] = json.dumps(custom_config)


@pytest.mark.parametrize("change", [
    _custom_config_with_a_local_path,
    lambda s: s["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]["runtimeValue"]
    .update(constant="/srv/schemas/schema.pbtxt"),
    lambda s: s["root"]["dag"]["tasks"]["CsvExampleGen"]["inputs"]["parameters"]["input_base"]["runtimeValue"]
    .update(constant="file:///data/taxi"),
    lambda s: executor(s, "Transform")["container"]["args"].append("--setup_file=/opt/build/setup.py"),
], ids=["custom_config", "absolute path", "file uri", "beam flag"])
def test_paths_rule_finds_a_local_path_anywhere(specs, config, change):
    assert rules_broken(broken(specs, change), config) == ["paths"]


def test_paths_rule_finds_this_machines_directories_inside_strings(specs, config):
    place = spec_lint.build_machine_paths()[0]
    spec = broken(specs, lambda s: s["pipelineInfo"].update(description=f"built in {place} by hand"))
    assert rules_broken(spec, config) == ["paths"]


def test_caching_rule_refuses_a_cached_task_that_reads_outside_state(specs, config):
    for task in ("CsvExampleGen", "ImportSchemaGen", "ServingBaseline"):
        spec = broken(specs, lambda s: s["root"]["dag"]["tasks"][task].update(cachingOptions={"enableCache": True}))
        assert rules_broken(spec, config) == ["caching"], task


def test_edges_rule_compares_with_the_pipeline(specs, config):
    missing = broken(specs, lambda s: s["root"]["dag"]["tasks"]["Transform"]["dependentTasks"].remove("AnomalyGate"))
    problems = spec_lint.lint(missing, config, "kubeflow", IMAGE)
    assert [str(p) for p in problems] == ["edges: AnomalyGate -> Transform: is in the pipeline but not in the spec"]
    extra = broken(specs, lambda s: s["root"]["dag"]["tasks"]["Pusher"]["dependentTasks"].append("StatisticsGen"))
    assert [str(p) for p in spec_lint.lint(extra, config, "kubeflow", IMAGE)] == [
        "edges: StatisticsGen -> Pusher: is in the spec but not in the pipeline"]


def test_the_local_pipeline_has_the_edges_of_the_kubeflow_spec(specs, config, tmp_path):
    """One definition: the DAG a local run executes is the DAG the Kubeflow spec has."""
    from pipeline import local

    local_config = config.model_copy(update={"output": config.output.model_copy(update={"root": str(tmp_path)})})
    assert spec_lint.pipeline_edges(local.build_local_pipeline(local_config)) == spec_lint.spec_edges(specs["kubeflow"])

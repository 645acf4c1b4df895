"""Checks a compiled Kubeflow spec against what the target's backend accepts and what tfxline's pods
need (`tfxline compile --check`, and `tfxline submit` before it uploads). Each rule returns the
problems it finds; a spec is good when no rule finds one.

The SDK's own checks are too lenient for this: kfp's loader and a strict parse into
pipeline_spec_pb2 both accept a spec with resolver tasks, which open-source KFP refuses."""
import dataclasses
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import yaml

from config import PipelineConfig

EXECUTOR_COMMAND = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
DRIVER_COMMAND = ["python", "-m", "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"]
SCHEMA_VERSION = "2.1.0"
# KFP's launcher adds an output of this type to every task (see system/__init__.py).
KFP_LOGS_TYPE = "system.Artifact"
_PARAMETER_TYPES = {int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING"}


@dataclasses.dataclass(frozen=True)
class Problem:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}: {self.message}"


@dataclasses.dataclass
class Context:
    spec: dict
    config: PipelineConfig
    target: str
    image: str
    pipeline: object = None  # the TFX pipeline compiled for the target, built on first use

    def tfx_pipeline(self):
        if self.pipeline is None:
            from pipeline.kubeflow import target_pipeline

            self.pipeline = target_pipeline(self.config, self.target, self.image)
        return self.pipeline


def _executors(spec: dict) -> Dict[str, dict]:
    return spec.get("deploymentSpec", {}).get("executors", {})


def _containers(spec: dict) -> Iterator[Tuple[str, dict]]:
    for label, executor in _executors(spec).items():
        if "container" in executor:
            yield label, executor["container"]


def _tasks(spec: dict) -> Dict[str, dict]:
    return spec.get("root", {}).get("dag", {}).get("tasks", {})


def rule_parse(context: Context) -> List[Problem]:
    """The spec parses strictly as a PipelineSpec and loads with the kfp SDK."""
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    problems = []
    try:
        json_format.ParseDict(context.spec, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    except json_format.ParseError as error:
        problems.append(Problem("parse", "spec", f"not a PipelineSpec: {str(error).splitlines()[0]}"))
    try:
        components.load_component_from_text(yaml.safe_dump(context.spec))
    except Exception as error:  # the SDK raises many kinds; any of them means it cannot load the spec
        problems.append(Problem("parse", "spec", f"the kfp SDK cannot load it: {type(error).__name__}: {error}"))
    return problems


def rule_schema(context: Context) -> List[Problem]:
    """Pipeline-spec schema 2.1: open-source KFP's driver resolves only its constants
    (`runtimeValue.constant`); 2.0's `constantValue` fails there."""
    problems = []
    version = context.spec.get("schemaVersion")
    if version != SCHEMA_VERSION:
        problems.append(Problem("schema", "schemaVersion", f"is {version}; compile with schema {SCHEMA_VERSION}"))
    for name, task in _tasks(context.spec).items():
        for key, parameter in task.get("inputs", {}).get("parameters", {}).items():
            if "constantValue" in parameter.get("runtimeValue", {}):
                problems.append(Problem("schema", f"root.dag.tasks.{name}.inputs.parameters.{key}",
                                        "a 2.0 constantValue, which open-source KFP cannot resolve"))
    return problems


def rule_image(context: Context) -> List[Problem]:
    """Every container runs the pipeline image."""
    return [Problem("image", f"deploymentSpec.executors.{label}.container.image",
                    f"is '{container.get('image')}', not the pipeline image '{context.image}'")
            for label, container in _containers(context.spec) if container.get("image") != context.image]


def _importable(path: str) -> Optional[str]:
    """None if `path` (module.Class) imports, else why not."""
    from tfx.utils import import_utils

    try:
        import_utils.import_class_by_path(path)
    except (ImportError, AttributeError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def rule_command(context: Context) -> List[Problem]:
    """Every container runs TFX's V2 entrypoint on an executor class that imports here (the image's
    environment); ExampleGen's preCacheCheck runs TFX's ExampleGen driver."""
    from tfx.dsl.components.base.base_executor import BaseExecutor
    from tfx.utils import import_utils

    problems = []
    for label, container in _containers(context.spec):
        where = f"deploymentSpec.executors.{label}.container"
        if list(container.get("command", [])) != EXECUTOR_COMMAND:
            problems.append(Problem("command", f"{where}.command",
                                    f"is {container.get('command')}, not TFX's V2 entrypoint {EXECUTOR_COMMAND}"))
        args = list(container.get("args", []))
        if "--executor_class_path" not in args or args.index("--executor_class_path") + 1 >= len(args):
            problems.append(Problem("command", f"{where}.args", "names no --executor_class_path"))
        else:
            path = args[args.index("--executor_class_path") + 1]
            why = _importable(path)
            if why:
                problems.append(Problem("command", f"{where}.args", f"executor {path} does not import: {why}"))
            elif not issubclass(import_utils.import_class_by_path(path), BaseExecutor):
                problems.append(Problem("command", f"{where}.args", f"{path} is not a TFX executor"))
        if "--json_serialized_invocation_args" not in args or "{{$}}" not in args:
            problems.append(Problem("command", f"{where}.args", "does not pass the ExecutorInput ({{$}})"))
        hook = container.get("lifecycle", {}).get("preCacheCheck")
        if hook is not None and list(hook.get("command", [])) != DRIVER_COMMAND:
            problems.append(Problem("command", f"{where}.lifecycle.preCacheCheck.command",
                                    f"is {hook.get('command')}, not TFX's ExampleGen driver {DRIVER_COMMAND}"))
    return problems


def spec_edges(spec: dict) -> Set[Tuple[str, str]]:
    from pipeline.spec_runner import upstream_tasks

    return {(upstream, name) for name, task in _tasks(spec).items() for upstream in upstream_tasks(task)}


def pipeline_edges(tfx_pipeline) -> Set[Tuple[str, str]]:
    """The TFX pipeline's edges as TFX's V2 compiler lays them out: a latest-blessed-model resolver
    becomes two tasks, `<id>-model-blessing-resolver` then `<id>-model-resolver`."""
    from tfx.dsl.components.common.resolver import Resolver

    task_of = {}
    edges = set()
    for node in tfx_pipeline.components:
        if isinstance(node, Resolver):
            task_of[node.id] = f"{node.id}-model-resolver"
            edges.add((f"{node.id}-model-blessing-resolver", f"{node.id}-model-resolver"))
        else:
            task_of[node.id] = node.id
    for node in tfx_pipeline.components:
        if not isinstance(node, Resolver):
            edges |= {(task_of[upstream.id], node.id) for upstream in node.upstream_nodes}
    return edges


def rule_edges(context: Context) -> List[Problem]:
    """The DAG's edges are the pipeline's (the one definition local runs use)."""
    expected, found = pipeline_edges(context.tfx_pipeline()), spec_edges(context.spec)
    problems = [Problem("edges", f"{a} -> {b}", "is in the pipeline but not in the spec")
                for a, b in sorted(expected - found)]
    problems += [Problem("edges", f"{a} -> {b}", "is in the spec but not in the pipeline")
                 for a, b in sorted(found - expected)]
    return problems


def rule_parameters(context: Context) -> List[Problem]:
    """The run-time parameters are declared with the config's values as defaults, optional, and
    every task input that names a pipeline input names a declared one."""
    from pipeline.pipeline import run_parameters

    declared = context.spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    problems = []
    for name, (ptype, default) in run_parameters(context.config).items():
        where = f"root.inputDefinitions.parameters.{name}"
        if name not in declared:
            problems.append(Problem("parameters", where, "is not declared"))
            continue
        definition = declared[name]
        if definition.get("parameterType") != _PARAMETER_TYPES[ptype]:
            problems.append(Problem("parameters", where, f"type {definition.get('parameterType')}, expected "
                                                         f"{_PARAMETER_TYPES[ptype]}"))
        if "defaultValue" not in definition:
            problems.append(Problem("parameters", where, "has no defaultValue (a run without it would fail)"))
        elif definition["defaultValue"] != default:
            problems.append(Problem("parameters", where, f"default {definition['defaultValue']!r}, the config says "
                                                         f"{default!r}"))
        if not definition.get("isOptional"):
            problems.append(Problem("parameters", where, "is not optional"))
    for task_name, task in _tasks(context.spec).items():
        for key, parameter in task.get("inputs", {}).get("parameters", {}).items():
            source = parameter.get("componentInputParameter")
            if source is not None and source not in declared:
                problems.append(Problem("parameters", f"root.dag.tasks.{task_name}.inputs.parameters.{key}",
                                        f"names pipeline input '{source}', which is not declared"))
    return problems


def _strings(value, where: str) -> Iterator[Tuple[str, str]]:
    """Every string in `value` with where it is; strings that hold JSON are decoded and walked too."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")
    elif isinstance(value, str):
        yield where, value
        text = value.strip()
        if text[:1] in "{[":
            try:
                decoded = json.loads(text)
            except ValueError:
                return
            yield from _strings(decoded, f"{where}(json)")


def build_machine_paths() -> List[str]:
    """Directories of this machine that a spec must never name."""
    repository = str(Path(__file__).resolve().parents[1])
    places = {repository, os.path.expanduser("~"), os.getcwd(), tempfile.gettempdir(), sys.prefix}
    return sorted(p for p in places if p and p != "/")


def _local_path(text: str, allowed: List[str], machine: List[str]) -> Optional[str]:
    candidates = [text] + [part.split("=", 1)[1] for part in re.findall(r"--[\w.-]+=\S+", text)]
    for candidate in candidates:
        if any(candidate.startswith(prefix) for prefix in allowed):
            continue
        if candidate.startswith(("/", "~", "file:")) or re.match(r"^[A-Za-z]:\\", candidate):
            return candidate
    for place in machine:
        if place in text:
            return place
    return None


def rule_paths(context: Context) -> List[Problem]:
    """No path of this machine anywhere: every string, and the JSON inside strings (custom_config,
    the exec properties), holds URIs or names only."""
    allowed = []
    profile = context.config.beam.profiles[context.config.kubeflow.beam_profile]
    # Pod-side paths the config names on purpose: a worker boot command, a job-server jar in the image.
    for field in ("environment_config", "job_server_jar"):
        value = getattr(profile, field, None)
        if value and value.startswith("/"):
            allowed.append(value)
    machine = build_machine_paths()
    problems = []
    for where, text in _strings(context.spec, "spec"):
        found = _local_path(text, allowed, machine)
        if found:
            problems.append(Problem("paths", where, f"names a path of this machine: {found[:200]}"))
    return problems


def rule_resolver(context: Context) -> List[Problem]:
    """Open-source KFP refuses resolver tasks (its compiler: "resolver executors not implemented")."""
    if context.target != "kubeflow":
        return []
    return [Problem("resolver", f"deploymentSpec.executors.{label}",
                    "is a resolver, which open-source Kubeflow Pipelines rejects; compile with --target kubeflow "
                    "(the baseline then comes from the serving directory)")
            for label, executor in _executors(context.spec).items() if "resolver" in executor]


def _artifact_titles(spec: dict) -> Iterator[Tuple[str, str]]:
    for name, component in spec.get("components", {}).items():
        for side in ("inputDefinitions", "outputDefinitions"):
            for key, artifact in component.get(side, {}).get("artifacts", {}).items():
                kind = artifact.get("artifactType", {})
                title = kind.get("schemaTitle") or (yaml.safe_load(kind.get("instanceSchema", "")) or {}).get("title")
                yield f"components.{name}.{side}.artifacts.{key}", title or ""


def rule_artifact_types(context: Context) -> List[Problem]:
    """Every artifact type resolves to a class in the pods' environment, as TFX's entrypoint looks
    them up: TFX's standard types by title, others by the title as an import path; and KFP's own
    `system.Artifact`, the type of the executor-logs output KFP adds to every task."""
    from tfx.orchestration.kubeflow.v2.compiler_utils import TITLE_TO_CLASS_PATH

    problems = []
    titles = list(_artifact_titles(context.spec)) + [("KFP's executor-logs output", KFP_LOGS_TYPE)]
    for where, title in titles:
        why = _importable(TITLE_TO_CLASS_PATH.get(title, title))
        if why:
            problems.append(Problem("artifact_types", where, f"type '{title}' does not import in the pods: {why}"))
    return problems


def rule_caching(context: Context) -> List[Problem]:
    """Tasks that read state outside their inputs are never cached by the backend."""
    from pipeline.kubeflow import uncached_tasks

    tasks = _tasks(context.spec)
    return [Problem("caching", f"root.dag.tasks.{name}.cachingOptions", "caching is on for a task that reads state "
                               "outside its inputs; the backend would reuse an old result")
            for name in uncached_tasks(context.config, context.target)
            if name in tasks and tasks[name].get("cachingOptions", {}).get("enableCache", False)]


# In the order their problems are reported: what the backend refuses first.
RULES: Dict[str, Callable[[Context], List[Problem]]] = {
    "parse": rule_parse,
    "schema": rule_schema,
    "resolver": rule_resolver,
    "image": rule_image,
    "command": rule_command,
    "artifact_types": rule_artifact_types,
    "parameters": rule_parameters,
    "paths": rule_paths,
    "caching": rule_caching,
    "edges": rule_edges,
}


def lint(spec: dict, config: PipelineConfig, target: str, image: str) -> List[Problem]:
    context = Context(spec, config, target, image)
    return [problem for rule in RULES.values() for problem in rule(context)]

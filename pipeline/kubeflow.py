"""Compiling the pipeline for Kubeflow Pipelines with TFX's V2 runner (the V1 runner is gone in
TFX 1.16), for the target the user has:

- `kubeflow` (open-source KFP): pipeline-spec schema 2.1 (its driver resolves only 2.1's
  constants) and no resolver task (its compiler refuses them): the Evaluator's baseline is the
  serving directory's stable version (components/serving_baseline).
- `vertex` (Vertex AI Pipelines): schema 2.1 as well, with TFX's latest-blessed-model resolver.

Every path in the spec is the pods' (the config's `kubeflow` section, object-store URIs), the
run-time parameters carry the config's values as defaults, and the tasks that read state outside
their inputs (the data directory, the schema file, the serving directory) are never cached by the
backend. The spec is built in memory, checked by pipeline/spec_lint.py when asked, and written last.
"""
import json
import os
import re
import tempfile
from typing import Optional

import yaml

from config import KUBEFLOW_TARGETS, PipelineConfig

# KFP's launcher keeps artifacts in these stores only (backend/src/v2/component LocalPathForURI).
PIPELINE_ROOT_SCHEMES = ("gs", "s3", "minio")
_URI = re.compile(r"^([a-z][a-z0-9+.-]*)://.+")
# An image reference: [registry[:port]/]path[:tag][@digest], lower-case path components.
_IMAGE = re.compile(r"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
                    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
TFX_VERSION_LABEL = "tfx-1.16.0"


class KubeflowError(ValueError):
    """The config cannot give a spec the target runs; the message names the field and what to do."""


def target_of(config: PipelineConfig, target: Optional[str] = None) -> str:
    target = target or config.kubeflow.target
    if target not in KUBEFLOW_TARGETS:
        raise KubeflowError(f"unknown target '{target}'; use one of {', '.join(KUBEFLOW_TARGETS)}")
    return target


def image_of(config: PipelineConfig, image: Optional[str] = None) -> str:
    image = image or config.kubeflow.image
    if not image:
        raise KubeflowError("kubeflow.image is not set: build the Dockerfile's image, push it to a registry the "
                            "cluster pulls from, and set kubeflow.image (or pass --image)")
    if not _IMAGE.match(image):
        raise KubeflowError(f"kubeflow.image '{image}' is not an image reference such as "
                            "registry.example.com/team/tfxline:1.0")
    return image


def _pod_uri(field: str, value: str, schemes: Optional[tuple] = None) -> None:
    match = _URI.match(value)
    if match is None or match.group(1) == "file":
        kind = "a path on this machine" if match is None else "a file:// URI (the pod's own disk)"
        raise KubeflowError(f"kubeflow.{field} '{value}' is {kind}; the pods see object stores only: give a "
                            f"{'gs:// (or s3://, minio://)' if schemes else 'gs:// (or s3://)'} URI and copy "
                            "what the pipeline reads there")
    if schemes and match.group(1) not in schemes:
        raise KubeflowError(f"kubeflow.{field} '{value}': KFP's launcher stores artifacts in "
                            f"{', '.join(s + '://' for s in schemes)} only; use a bucket in one of those")


def check_config(config: PipelineConfig, target: str) -> None:
    """Everything about the config that would make the compiled spec fail in the cluster, before
    any TFX work: one KubeflowError naming the first problem."""
    kubeflow = config.kubeflow
    _pod_uri("pipeline_root", kubeflow.pipeline_root, PIPELINE_ROOT_SCHEMES)
    for field in ("data_path", "serving_dir", "edge_dir"):
        _pod_uri(field, getattr(kubeflow, field))
    if config.schema_.source == "curated":
        if not kubeflow.schema_path:
            raise KubeflowError(f"kubeflow.schema_path is not set: the pods need the curated schema at a URI; copy "
                                f"{config.schema_.curated_path} to the bucket and set kubeflow.schema_path")
        _pod_uri("schema_path", kubeflow.schema_path)
    if target == "kubeflow" and config.data.span_pattern:
        raise KubeflowError("data.span_pattern needs ExampleGen's driver, which open-source Kubeflow Pipelines never "
                            "runs (it ignores the spec's preCacheCheck); use a data path without spans for target "
                            "kubeflow, or target vertex")


def target_pipeline(config: PipelineConfig, target: str, image: str):
    """The TFX pipeline compiled for `target`: the pods' paths and Beam profile, run-time parameters,
    and the target's baseline (the serving directory's stable version, or TFX's resolver on Vertex)."""
    from pipeline.pipeline import RESOLVER_BASELINE, SERVING_BASELINE, create_pipeline

    kubeflow = config.kubeflow
    return create_pipeline(
        config,
        pipeline_root=kubeflow.pipeline_root,
        data_path=kubeflow.data_path,
        schema_path=kubeflow.schema_path if config.schema_.source == "curated" else None,
        serving_dir=kubeflow.serving_dir,
        edge_dir=kubeflow.edge_dir,
        beam_profile=kubeflow.beam_profile,
        image=image,
        baseline=SERVING_BASELINE if target == "kubeflow" else RESOLVER_BASELINE,
        runtime_parameters=True)


def build_spec(config: PipelineConfig, target: Optional[str] = None, image: Optional[str] = None) -> dict:
    """The PipelineSpec (as a dict) that `tfxline compile` writes."""
    target = target_of(config, target)
    image = image_of(config, image)
    check_config(config, target)
    # Not `tfx.v1`: it also imports TFX's Google Cloud extensions, which this compile never uses.
    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import KubeflowV2DagRunner, KubeflowV2DagRunnerConfig

    from pipeline.pipeline import run_parameters

    # Schema 2.1 for both targets: the open-source driver resolves only its constants, and only
    # with it do RuntimeParameters compile to YAML (2.0 raises KeyError: 'parameterType').
    runner = KubeflowV2DagRunner(config=KubeflowV2DagRunnerConfig(default_image=image, use_pipeline_spec_2_1=True))
    spec = runner.run(target_pipeline(config, target, image), write_out=False)["pipelineSpec"]
    # TFX writes the run-time parameters' types only; the backends read the default and optional flag.
    declared = spec["root"].setdefault("inputDefinitions", {}).setdefault("parameters", {})
    for name, (_, default) in run_parameters(config).items():
        declared[name]["defaultValue"] = default
        declared[name]["isOptional"] = True
    # Where the backend puts the artifacts when a run names no pipeline root.
    spec["defaultPipelineRoot"] = config.kubeflow.pipeline_root
    tasks = spec["root"]["dag"]["tasks"]
    for task in uncached_tasks(config, target):
        if task in tasks:
            tasks[task]["cachingOptions"] = {"enableCache": False}
    return spec


def uncached_tasks(config: PipelineConfig, target: str) -> list:
    """Tasks whose output depends on more than their inputs and parameters, which the backend's cache
    keys on: the schema file and the serving directory can change under the same path, and without
    ExampleGen's driver (never run by open-source KFP) nothing fingerprints the data directory."""
    from pipeline.pipeline import SERVING_BASELINE_ID

    tasks = ["ImportSchemaGen", SERVING_BASELINE_ID]
    if target == "kubeflow":
        tasks.append("CsvExampleGen")
    return tasks


def spec_text(spec: dict) -> str:
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    header = [f"# PIPELINE DEFINITION (tfxline, compiled by {spec.get('sdkVersion', TFX_VERSION_LABEL)})",
              f"# Name: {spec['pipelineInfo']['name']}", "# Inputs:"]
    header += [f"#  {name}: {value['parameterType']} [Default: {value.get('defaultValue')}]"
               for name, value in sorted(parameters.items())]
    return "\n".join(header) + "\n" + yaml.safe_dump(spec, sort_keys=True)


def write_spec(spec: dict, output_file: str) -> str:
    """Writes the spec whole (a temporary file renamed into place); returns its absolute path."""
    output_file = os.path.abspath(output_file)
    directory = os.path.dirname(output_file)
    if not os.path.isdir(directory):
        raise KubeflowError(f"{directory} is not a directory; create it or pass another --output")
    descriptor, temporary = tempfile.mkstemp(prefix=".tfxline-spec-", dir=directory)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(spec_text(spec))
    os.chmod(temporary, 0o644)
    os.replace(temporary, output_file)
    return output_file


def read_spec(path: str) -> dict:
    try:
        with open(path) as handle:
            documents = [document for document in yaml.safe_load_all(handle) if document is not None]
    except FileNotFoundError:
        raise KubeflowError(f"{path}: no such spec file (write one with tfxline compile)") from None
    except yaml.YAMLError as error:
        raise KubeflowError(f"{path} is not YAML: {str(error).splitlines()[0]}") from None
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise KubeflowError(f"{path}: expected one PipelineSpec document, found {len(documents)}")
    spec = documents[0]
    # A PipelineJob JSON (TFX's deprecated JSON output) holds the spec under pipelineSpec.
    return spec.get("pipelineSpec", spec) if isinstance(spec.get("pipelineSpec"), dict) else spec


def parameter_summary(spec: dict) -> str:
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return ", ".join(f"{name}={json.dumps(value.get('defaultValue'))}" for name, value in sorted(parameters.items()))

"""A small trained, pushed and edge-exported taxi model for the fast tier, without a pipeline run: the
pipeline's own components are built from the config and their executors called directly, in order
(BatchedCsvExampleGen, Transform, Trainer, Pusher, TFLiteExport), on a few hundred rows. No runner,
no ML Metadata, no StatisticsGen or Evaluator (the end-to-end tier covers those)."""
import dataclasses
import os
import random
import shutil
from pathlib import Path

from google.protobuf import message
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from config import load_config
from pipeline.pipeline import create_pipeline

ROWS = 600


@dataclasses.dataclass
class TinyModel:
    config: object
    examples_uri: str
    transform_uri: str
    saved_model_dir: str  # the Trainer's Format-Serving directory
    version: str          # the version the Pusher and TFLiteExport published
    serving_base: str     # <serving dir>/<name>
    edge_base: str        # <edge dir>/<name>


def _exec_properties(component) -> dict:
    """As a runner hands them to the executor: protos as JSON text, None left out."""
    return {key: proto_utils.proto_to_json(value) if isinstance(value, message.Message) else value
            for key, value in component.exec_properties.items() if value is not None}


def _artifact(artifact_type, uri: Path, **properties):
    artifact = artifact_type()
    artifact.uri = str(uri)
    uri.mkdir(parents=True, exist_ok=True)
    for name, value in properties.items():
        setattr(artifact, name, value)
    return artifact


def _execute(component, inputs: dict, outputs: dict, tmp: Path) -> None:
    context = None
    if hasattr(component.executor_spec, "beam_pipeline_args"):
        from tfx.dsl.components.base import base_beam_executor

        context = base_beam_executor.BaseBeamExecutor.Context(
            beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
            tmp_dir=str(tmp / "beam"), unique_id=component.id)
    executor = component.executor_spec.executor_class(context)
    executor.Do({k: [v] for k, v in inputs.items()}, {k: [v] for k, v in outputs.items()},
                _exec_properties(component))


def build(root: Path, header, rows, config_path: Path) -> TinyModel:
    from tests.conftest import write_csv

    data = write_csv(root / "data" / "data.csv", header, random.Random(11).sample(rows, ROWS)).parent
    config = load_config(str(config_path))
    config = config.model_copy(update={"data": config.data.model_copy(update={"path": str(data)})})
    out = root / "out"
    pipeline = create_pipeline(config, pipeline_root=str(out / "pipeline"), data_path=str(data),
                               schema_path=config.schema_.curated_path, serving_dir=str(out / "serving"),
                               edge_dir=str(out / "edge"))
    components = {component.id: component for component in pipeline.components}

    examples = _artifact(standard_artifacts.Examples, out / "examples",
                         split_names=artifact_utils.encode_split_names(["train", "eval"]))
    _execute(components["CsvExampleGen"], {}, {"examples": examples}, root)
    schema = _artifact(standard_artifacts.Schema, out / "schema")
    shutil.copy(config.schema_.curated_path, out / "schema" / "schema.pbtxt")
    transform_graph = _artifact(standard_artifacts.TransformGraph, out / "transform_graph")
    _execute(components["Transform"], {"examples": examples, "schema": schema},
             {"transform_graph": transform_graph}, root)
    model = _artifact(standard_artifacts.Model, out / "model")
    _execute(components["Trainer"], {"examples": examples, "transform_graph": transform_graph, "schema": schema},
             {"model": model, "model_run": _artifact(standard_artifacts.ModelRun, out / "model_run")}, root)
    blessing = _artifact(standard_artifacts.ModelBlessing, out / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = _artifact(standard_artifacts.PushedModel, out / "pushed_model")
    _execute(components["Pusher"], {"model": model, "model_blessing": blessing}, {"pushed_model": pushed}, root)
    _execute(components["TFLiteExport"], {"model": model, "model_blessing": blessing, "examples": examples,
                                          "pushed_model": pushed},
             {"edge_model": _artifact(components["TFLiteExport"].outputs["edge_model"].type, out / "edge_model")},
             root)
    return TinyModel(config, examples.uri, transform_graph.uri, os.path.join(model.uri, "Format-Serving"),
                     pushed.get_string_custom_property("pushed_version"),
                     os.path.join(str(out / "serving"), config.name), os.path.join(str(out / "edge"), config.name))

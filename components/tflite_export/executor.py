"""Converts a blessed, pushed model to TFLite (float and quantized), checks both against the
SavedModel on the eval split, and publishes them with a manifest under the same version
number as the TF Serving push (serving/layout.py: the manifest is written last)."""
import json
import os
from typing import Any, Dict, List

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.tflite_export import converter, parity
from serving import layout
from trainer.export import RAW_FEATURES_FILE, SERVING_RAW

MODEL_KEY, BLESSING_KEY, EXAMPLES_KEY, PUSHED_MODEL_KEY = "model", "model_blessing", "examples", "pushed_model"
EDGE_MODEL_KEY = "edge_model"
PARAMETERS = ("edge_dir", "model_name", "task", "output_key", "label_name", "max_score_diff",
              "max_metric_drop", "max_examples")


def eval_examples(examples_uri: str, limit: int) -> List[bytes]:
    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*"))
    return [record.numpy() for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)]


def export(saved_model_dir: str, serialized: List[bytes], version: str, settings: Dict[str, Any]) -> dict:
    """Converts, checks and publishes; returns the manifest. Raises ParityError instead of publishing."""
    raw_inputs = json.loads(layout.read_bytes(os.path.join(saved_model_dir, RAW_FEATURES_FILE)))
    conversion = converter.convert(saved_model_dir)
    files = {layout.FLOAT_MODEL: conversion.float_model, layout.QUANTIZED_MODEL: conversion.quantized_model}
    report = parity.check(conversion.saved_model, files[layout.FLOAT_MODEL], files[layout.QUANTIZED_MODEL],
                          serialized, raw_inputs, settings["output_key"], settings["label_name"], settings["task"],
                          float(settings["max_score_diff"]), float(settings["max_metric_drop"]))
    content = layout.build_manifest(version, settings["model_name"], raw_inputs, settings["output_key"], files,
                                    report.as_dict(), signature=SERVING_RAW)
    layout.publish_edge_version(layout.join(settings["edge_dir"], settings["model_name"]), version, files, content)
    return content


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        edge_model = artifact_utils.get_single_instance(output_dict[EDGE_MODEL_KEY])
        pushed = artifact_utils.get_single_instance(input_dict[PUSHED_MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
        if not (blessing.get_int_custom_property("blessed") and pushed.get_int_custom_property("pushed")):
            edge_model.set_int_custom_property("exported", 0)
            return
        version = pushed.get_string_custom_property("pushed_version")
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        content = export(path_utils.serving_model_path(model.uri),
                         eval_examples(examples.uri, int(exec_properties["max_examples"])), version, exec_properties)
        layout.write_json(layout.join(edge_model.uri, layout.MANIFEST), content)
        edge_model.set_int_custom_property("exported", 1)
        edge_model.set_string_custom_property("edge_version", version)
        edge_model.set_string_custom_property(
            "edge_path", layout.join(exec_properties["edge_dir"], exec_properties["model_name"], version))

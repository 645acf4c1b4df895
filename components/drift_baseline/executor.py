"""Publishes the profile of a pushed model's training data as the drift baseline of later runs: a copy
of the DataProfile as a DriftBaseline artifact (for lineage), and a copy beside the pushed version in
the serving directory (serving/layout.py `training_profile_dir`), where ServingBaseline finds the
profile of whichever version is `stable` when a later run starts. So the drift baseline is the
served model's training data, with no resolver (which open-source Kubeflow Pipelines cannot run)."""
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.atomic_pusher.executor import NEW_VERSION
from serving import layout
from tfxline import set_custom_properties

PROFILE_KEY = "profile"
PUSHED_MODEL_KEY = "pushed_model"
BASELINE_KEY = "baseline"
PUBLISHED_PROPERTY = "published"


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        profile = artifact_utils.get_single_instance(input_dict[PROFILE_KEY])
        pushed = artifact_utils.get_single_instance(input_dict[PUSHED_MODEL_KEY])
        baseline = artifact_utils.get_single_instance(output_dict[BASELINE_KEY])
        new_version = pushed.has_custom_property(NEW_VERSION) and int(pushed.get_custom_property(NEW_VERSION) or 0)
        baseline.set_int_custom_property(PUBLISHED_PROPERTY, int(bool(new_version)))
        if not new_version:  # not pushed, or the model was already the newest version
            return
        version = pushed.get_string_custom_property("pushed_version")
        properties = {"split_names": profile.get_string_custom_property("split_names"),
                      "span": profile.get_int_custom_property("span"), "pushed_version": version}
        io_utils.copy_dir(profile.uri, baseline.uri)
        set_custom_properties(baseline, properties)
        base_directory = pushed.get_string_custom_property("pushed_destination").rstrip("/").rsplit("/", 1)[0]
        serving_dir, model_name = layout.split_base(base_directory)
        layout.publish_training_profile(profile.uri, serving_dir, model_name, int(version), properties)

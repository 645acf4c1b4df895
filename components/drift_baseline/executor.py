"""Publishes the profile of a pushed model's training data as the drift baseline of later runs: a copy of
the DataProfile as a DriftBaseline artifact, which the next run's resolver finds (the newest one)."""
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

PROFILE_KEY = "profile"
PUSHED_MODEL_KEY = "pushed_model"
BASELINE_KEY = "baseline"


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        profile = artifact_utils.get_single_instance(input_dict[PROFILE_KEY])
        pushed = artifact_utils.get_single_instance(input_dict[PUSHED_MODEL_KEY])
        baseline = artifact_utils.get_single_instance(output_dict[BASELINE_KEY])
        io_utils.copy_dir(profile.uri, baseline.uri)
        baseline.set_string_custom_property("split_names", profile.get_string_custom_property("split_names"))
        baseline.set_int_custom_property("span", profile.get_int_custom_property("span"))
        baseline.set_string_custom_property("pushed_version", pushed.get_string_custom_property("pushed_version"))

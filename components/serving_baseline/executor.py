"""Emits the model the serving directory labels `stable` (serving/release_state.py) as a Model
artifact, the Evaluator's baseline: the model actually serving, wherever the pipeline runs (a
local run, a Kubeflow pod reading gs://). With no stable version yet the artifact is empty and
says so (`serving_version` 0), and the Evaluator runs without a baseline, as on a first run.

The version is copied into the artifact (`<uri>/Format-Serving`, the layout the Evaluator reads
a Model in), so the baseline stays what was evaluated even after the serving directory moves on.
Likewise the profile of its training data (published beside it by DriftBaselinePublisher) becomes
the DriftBaseline output, the drift gate's reference; empty (`serving_version` 0) when there is no
stable version or it has no profile."""
import logging
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from serving import layout, release_state
from tfxline import set_custom_properties

log = logging.getLogger(__name__)

MODEL_KEY, DRIFT_BASELINE_KEY = "model", "drift_baseline"
SERVING_DIR_KEY, MODEL_NAME_KEY, STABLE_WHEN_BUILT_KEY = "serving_dir", "model_name", "stable_when_built"
# Custom properties of the output: the stable version copied (0: none), and where it was.
VERSION_PROPERTY, PATH_PROPERTY = "serving_version", "serving_path"


class ServingStateChanged(RuntimeError):
    """The stable label moved between building the pipeline and running this component."""


def serving_version(model: types.Artifact) -> Optional[int]:
    """The stable version a ServingBaseline output holds: 0 for none, None for a Model artifact
    that did not come from ServingBaseline. Through a Kubeflow pod's metadata an integer custom
    property comes back as a number, so both forms are read."""
    if not model.has_custom_property(VERSION_PROPERTY):
        return None
    return int(model.get_custom_property(VERSION_PROPERTY) or 0)


def is_empty(artifact: types.Artifact) -> bool:
    """Whether this is a ServingBaseline output that holds nothing (no stable version, or for the
    drift baseline, no profile of its training data)."""
    return serving_version(artifact) == 0


def stable_version(serving_dir: str, model_name: str) -> int:
    """The version labelled `stable` in the serving directory, 0 when there is none."""
    return release_state.read_release(serving_dir, model_name).labels.get(release_state.STABLE, 0)


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        serving_dir, model_name = exec_properties[SERVING_DIR_KEY], exec_properties[MODEL_NAME_KEY]
        version = stable_version(serving_dir, model_name)
        expected = exec_properties.get(STABLE_WHEN_BUILT_KEY)
        if expected is not None and int(expected) != version:
            raise ServingStateChanged(
                f"the stable version of '{model_name}' in {serving_dir} changed from {expected} to {version} while "
                "the pipeline ran (tfxline release, or another push); run the pipeline again")
        fileio.makedirs(model.uri)
        model.set_int_custom_property(VERSION_PROPERTY, version)
        drift_baseline = artifact_utils.get_single_instance(output_dict[DRIFT_BASELINE_KEY])
        fileio.makedirs(drift_baseline.uri)
        drift_baseline.set_int_custom_property(VERSION_PROPERTY, 0)
        if not version:
            return
        source = layout.join(serving_dir, model_name, str(version))
        io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
        model.set_string_custom_property(PATH_PROPERTY, source)
        profile = layout.read_training_profile(serving_dir, model_name, version)
        if profile is None:
            log.warning("stable version %s of '%s' has no training profile in %s: no drift baseline", version,
                        model_name, serving_dir)
            return
        directory, properties = profile
        io_utils.copy_dir(directory, drift_baseline.uri)
        set_custom_properties(drift_baseline, properties)
        drift_baseline.set_int_custom_property(VERSION_PROPERTY, version)
        drift_baseline.set_string_custom_property(PATH_PROPERTY, directory)

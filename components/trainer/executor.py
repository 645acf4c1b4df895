"""TFX's generic Trainer executor with the number of epochs as its own parameter, so that it can
be a run-time parameter of a Kubeflow run: it replaces `training.epochs` in the model settings
that the run_fn reads (custom_config["config"], see pipeline/pipeline.py), and the Model artifact
records it (custom property `epochs`)."""
from typing import Any, Dict, List

from tfx import types
from tfx.components.trainer import executor as tfx_trainer
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

EPOCHS_KEY = "epochs"


class Executor(tfx_trainer.GenericExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        exec_properties = dict(exec_properties)
        epochs = int(exec_properties.pop(EPOCHS_KEY))
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        key = standard_component_specs.CUSTOM_CONFIG_KEY
        custom_config = json_utils.loads(exec_properties[key])
        custom_config["config"]["training"]["epochs"] = epochs
        exec_properties[key] = json_utils.dumps(custom_config)
        super().Do(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        model.set_int_custom_property(EPOCHS_KEY, epochs)

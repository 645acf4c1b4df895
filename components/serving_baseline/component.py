"""ServingBaseline: the Evaluator's baseline is the model the serving directory labels `stable`
(the model actually serving), instead of MLMD's latest blessed model: it needs no resolver task,
which open-source Kubeflow Pipelines cannot run, and follows `tfxline release` (after a rollback
the candidate is compared with what serves, not with the model rolled back from). Its second
output is that model's training-data profile, the DriftGate's baseline."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.serving_baseline import executor
from tfxline import DriftBaseline


class ServingBaselineSpec(ComponentSpec):
    PARAMETERS = {
        executor.SERVING_DIR_KEY: ExecutionParameter(type=str),
        executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
        # Local runs: the stable version when the pipeline was built, so that TFX's cache (keyed on
        # inputs and parameters) runs this again exactly when the serving state changed. Left out on
        # Kubeflow, where the task is never cached and reads the state when it runs.
        executor.STABLE_WHEN_BUILT_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
               executor.DRIFT_BASELINE_KEY: ChannelParameter(type=DriftBaseline)}


class ServingBaseline(base_component.BaseComponent):
    SPEC_CLASS = ServingBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, serving_dir: str, model_name: str, stable_when_built: Optional[int] = None):
        super().__init__(spec=ServingBaselineSpec(
            serving_dir=serving_dir, model_name=model_name, stable_when_built=stable_when_built,
            model=types.Channel(type=standard_artifacts.Model),
            drift_baseline=types.Channel(type=DriftBaseline)))

"""DriftBaselinePublisher: when the Pusher published a new version, makes that version's training-data
profile the drift baseline of the runs it serves in (executor.py)."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from components.drift_baseline import executor
from tfxline import DataProfile, DriftBaseline


class DriftBaselineSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {executor.PROFILE_KEY: ChannelParameter(type=DataProfile),
              executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel)}
    OUTPUTS = {executor.BASELINE_KEY: ChannelParameter(type=DriftBaseline)}


class DriftBaselinePublisher(base_component.BaseComponent):
    SPEC_CLASS = DriftBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, profile: types.BaseChannel, pushed_model: types.BaseChannel):
        super().__init__(spec=DriftBaselineSpec(profile=profile, pushed_model=pushed_model,
                                                baseline=types.Channel(type=DriftBaseline)))

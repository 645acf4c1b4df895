"""DriftGate: the new span's statistics against those of the served model's training data (executor.py).
Transform is made to depend on it, so a blocking drift stops the run before training."""
import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.drift_gate import executor
from config import PipelineConfig
from tfxline import DataProfile, DriftBaseline, DriftReport


class DriftGateSpec(ComponentSpec):
    PARAMETERS = {executor.FEATURES_KEY: ExecutionParameter(type=str),
                  executor.MONITORING_KEY: ExecutionParameter(type=str)}
    INPUTS = {executor.PROFILE_KEY: ChannelParameter(type=DataProfile),
              executor.BASELINE_KEY: ChannelParameter(type=DriftBaseline, optional=True),
              executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema)}
    OUTPUTS = {executor.REPORT_KEY: ChannelParameter(type=DriftReport)}


class DriftGate(base_component.BaseComponent):
    SPEC_CLASS = DriftGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, profile: types.BaseChannel, baseline: types.BaseChannel, schema: types.BaseChannel,
                 config: PipelineConfig):
        monitoring = config.monitoring
        super().__init__(spec=DriftGateSpec(
            profile=profile, baseline=baseline, schema=schema,
            features=json.dumps([{"name": f.name, "action": monitoring.action(f)} for f in config.features]),
            monitoring=monitoring.model_dump_json(),
            report=types.Channel(type=DriftReport)))

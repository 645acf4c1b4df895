"""DataProfiler: tfxline's statistics of each split (see executor.py)."""
import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.data_profiler import executor
from config import PipelineConfig
from tfxline import DataProfile


class DataProfilerSpec(ComponentSpec):
    PARAMETERS = {executor.FEATURES_KEY: ExecutionParameter(type=str),
                  executor.MONITORING_KEY: ExecutionParameter(type=str)}
    INPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {executor.PROFILE_KEY: ChannelParameter(type=DataProfile)}


class DataProfiler(base_component.BaseComponent):
    SPEC_CLASS = DataProfilerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, config: PipelineConfig):
        super().__init__(spec=DataProfilerSpec(
            examples=examples,
            features=json.dumps([{"name": f.name, "kind": f.kind} for f in config.features]),
            monitoring=config.monitoring.model_dump_json(),
            profile=types.Channel(type=DataProfile)))

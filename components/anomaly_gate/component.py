"""AnomalyGate: fails the run on ExampleValidator anomalies not allowed by the config.

Transform is made to depend on it, so a failing gate stops the run before training."""
import json
from typing import Iterable

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.anomaly_gate import executor
from tfxline import AnomalyReport


class AnomalyGateSpec(ComponentSpec):
    PARAMETERS = {executor.ALLOWED_ANOMALIES_KEY: ExecutionParameter(type=str)}
    INPUTS = {executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies)}
    OUTPUTS = {executor.REPORT_KEY: ChannelParameter(type=AnomalyReport)}


class AnomalyGate(base_component.BaseComponent):
    SPEC_CLASS = AnomalyGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, anomalies: types.BaseChannel, allowed_anomalies: Iterable[str] = ()):
        super().__init__(spec=AnomalyGateSpec(
            anomalies=anomalies,
            allowed_anomalies=json.dumps(sorted(allowed_anomalies)),
            report=types.Channel(type=AnomalyReport),
        ))

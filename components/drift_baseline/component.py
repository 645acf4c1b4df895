"""DriftBaseline: runs (under a condition in the pipeline) only when the Pusher published a new version."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from components.data_profiler.component import DataProfile
from components.drift_baseline import executor


class DriftBaseline(types.Artifact):
    """The DataProfile of a pushed model's training data; `span` and `pushed_version` properties."""
    TYPE_NAME = "tfxline.DriftBaseline"


class LatestBaselineStrategy(LatestArtifactStrategy):
    """The newest baseline, or none: TFX's LatestArtifactStrategy reports a pipeline's first run (no baseline
    yet) as a failed resolution, which ML Metadata then records as a FAILED execution. Kubeflow V2 compiles
    only LatestArtifactStrategy itself, so its compile keeps that."""

    def resolve_artifacts(self, store, input_dict):
        return {key: sorted(artifacts, key=lambda a: a.id)[-1:] for key, artifacts in input_dict.items()}


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

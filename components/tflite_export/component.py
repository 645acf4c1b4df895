"""TFLiteExport: after the Pusher, a TFLite model (float and quantized) for edge devices."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.tflite_export import executor
from tfxline import EdgeModel


class TFLiteExportSpec(ComponentSpec):
    PARAMETERS = {
        "edge_dir": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
        "task": ExecutionParameter(type=str),
        "output_key": ExecutionParameter(type=str),
        "label_name": ExecutionParameter(type=str),
        "max_score_diff": ExecutionParameter(type=float),
        "max_metric_drop": ExecutionParameter(type=float),
        "max_examples": ExecutionParameter(type=int),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
    }
    OUTPUTS = {executor.EDGE_MODEL_KEY: ChannelParameter(type=EdgeModel)}


class TFLiteExport(base_component.BaseComponent):
    """Runs only where the Pusher pushed (so only for blessed models) and reuses its version."""
    SPEC_CLASS = TFLiteExportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model, model_blessing, examples, pushed_model, edge_dir: str, model_name: str, task: str,
                 output_key: str, label_name: str, max_score_diff: float = 1e-4, max_metric_drop: float = 0.005,
                 max_examples: int = 2000):
        super().__init__(spec=TFLiteExportSpec(
            model=model, model_blessing=model_blessing, examples=examples, pushed_model=pushed_model,
            edge_dir=edge_dir, model_name=model_name, task=task, output_key=output_key, label_name=label_name,
            max_score_diff=max_score_diff, max_metric_drop=max_metric_drop, max_examples=max_examples,
            edge_model=types.Channel(type=EdgeModel)))

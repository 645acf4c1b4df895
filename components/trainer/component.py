"""TFX's Trainer (generic executor, a run_fn by module path) with `epochs` as a parameter of its
own (a number, or a RuntimeParameter on Kubeflow); otherwise the same inputs, outputs and task id."""
from typing import Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from components.trainer import executor


class TrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = {**standard_component_specs.TrainerSpec.PARAMETERS,
                  executor.EPOCHS_KEY: ExecutionParameter(type=int)}


class Trainer(base_component.BaseComponent):
    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, transform_graph: types.BaseChannel, schema: types.BaseChannel,
                 run_fn: str, train_args: trainer_pb2.TrainArgs, eval_args: trainer_pb2.EvalArgs, custom_config: dict,
                 epochs: Union[int, data_types.RuntimeParameter]):
        super().__init__(spec=TrainerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema, run_fn=run_fn,
            train_args=train_args, eval_args=eval_args, custom_config=json_utils.dumps(custom_config), epochs=epochs,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun)))

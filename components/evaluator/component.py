"""The Evaluator (TFMA) with run-time value thresholds, a baseline that may be empty and TFMA
0.47's cross-slice validation corrected (components/evaluator/executor.py); otherwise TFX's
Evaluator, with the same inputs, outputs and task id."""
from typing import Dict, Optional, Union

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from components.evaluator import executor


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        **{key: ExecutionParameter(type=float, optional=True) for key in executor.THRESHOLD_KEYS},
    }


class Evaluator(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: Optional[types.BaseChannel], eval_config: tfma.EvalConfig,
                 value_thresholds: Optional[Dict[str, Union[float, data_types.RuntimeParameter]]] = None):
        """`value_thresholds`: metric -> its bound (a number or a RuntimeParameter), replacing the
        bound the eval config has for that metric."""
        super().__init__(spec=EvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, eval_config=eval_config,
            example_splits=json_utils.dumps(None), fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            **{executor.THRESHOLD_PREFIX + metric: value for metric, value in (value_thresholds or {}).items()}))

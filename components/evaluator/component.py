"""TFX's Evaluator with the executor in executor.py: the same evaluation and blessing, with TFMA
0.47's cross-slice validation corrected so that the fairness gaps in the EvalConfig can gate."""
from tfx.components import Evaluator
from tfx.dsl.components.base import executor_spec

from components.evaluator import executor


class CrossSliceEvaluator(Evaluator):
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

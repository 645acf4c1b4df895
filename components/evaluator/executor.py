"""TFX's Evaluator executor with two additions: the value thresholds can be run-time parameters
(`threshold_<metric>`, replacing the bound in the eval config), and an empty ServingBaseline (no
stable version yet) is dropped, so the Evaluator runs without a baseline exactly as it does when
a resolver finds none: blessing on value thresholds alone."""
from typing import Any, Dict, List

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.serving_baseline.executor import is_empty
from config import METRIC_CLASSES

THRESHOLD_PREFIX = "threshold_"
THRESHOLD_KEYS = {THRESHOLD_PREFIX + metric: metric for metric in METRIC_CLASSES}


def with_value_thresholds(eval_config_json: str, thresholds: Dict[str, float]) -> str:
    """The eval config with each named metric's value threshold set to a new bound (the lower bound,
    or the upper bound of a lower-is-better metric, whichever the config has)."""
    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(eval_config_json, eval_config)
    classes = {METRIC_CLASSES[metric]: value for metric, value in thresholds.items()}
    found = set()
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name not in classes:
                continue
            for per_slice in metric.per_slice_thresholds:
                bound = per_slice.threshold.value_threshold
                side = bound.upper_bound if bound.HasField("upper_bound") else bound.lower_bound
                side.value = classes[metric.class_name]
                found.add(metric.class_name)
    missing = sorted(set(classes) - found)
    if missing:
        raise ValueError(f"no value threshold in the eval config for {missing}; a threshold parameter replaces "
                         "one that evaluation.thresholds sets")
    return proto_utils.proto_to_json(eval_config)


class Executor(tfx_evaluator.Executor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        exec_properties = dict(exec_properties)
        thresholds = {THRESHOLD_KEYS[key]: float(exec_properties.pop(key)) for key in list(exec_properties)
                      if key in THRESHOLD_KEYS and exec_properties[key] is not None}
        if thresholds:
            key = standard_component_specs.EVAL_CONFIG_KEY
            exec_properties[key] = with_value_thresholds(exec_properties[key], thresholds)
        baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
        if baseline and is_empty(baseline[0]):
            input_dict = {**input_dict, standard_component_specs.BASELINE_MODEL_KEY: []}
        super().Do(input_dict, output_dict, exec_properties)

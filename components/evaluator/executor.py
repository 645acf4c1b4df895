"""TFX's Evaluator executor with three additions:
- the value thresholds can be run-time parameters (`threshold_<metric>`, replacing the bound in
  the eval config);
- an empty ServingBaseline (no stable version yet) is dropped, so the Evaluator runs without a
  baseline exactly as it does when a resolver finds none: blessing on value thresholds alone;
- one correction of TFMA 0.47's validation result, so that the fairness gaps in the EvalConfig
  can gate.

TFMA 0.47 reports every cross-slicing spec that has a threshold as missing, even when its slice
pairs were found and checked: `metrics_validator` keys the validation details by their
`slicing_spec` only, while cross-slice details are kept in `cross_slicing_spec` (and merged into
the whole-split entry). So any `cross_slice_thresholds` would make every model fail validation.
The correction drops from `missing_cross_slices` each spec whose slice pairs are in TFMA's own
metrics output (so the validator did check them), re-derives `validation_ok` from what is left
(failures, missing slices, missing cross slices), rewrites the validation result and, if it now
passes, the blessing. Nothing else of TFMA's output changes; an EvalConfig without cross-slice
thresholds is left exactly as TFMA wrote it. Other TFMA versions are left alone."""
import os
from typing import Any, Dict, List

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as tfx_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.serving_baseline.executor import is_empty
from config import METRIC_CLASSES

CORRECTED_TFMA = "0.47."
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


def _columns(slice_key) -> frozenset:
    return frozenset(single.column for single in slice_key.single_slice_keys)


def _pairs_found(spec, cross_slice_columns: set) -> bool:
    """Whether a cross-slicing spec of feature keys (the kind the pipeline writes) matched any pair."""
    if spec.baseline_spec.feature_values or spec.baseline_spec.slice_keys_sql:
        return False
    baseline = frozenset(spec.baseline_spec.feature_keys)
    return any((baseline, frozenset(comparison.feature_keys)) in cross_slice_columns
               for comparison in spec.slicing_specs
               if not (comparison.feature_values or comparison.slice_keys_sql))


def corrected(result, metrics):
    """The validation result without the cross-slicing specs that TFMA reported missing although
    their pairs are in `metrics` (TFMA's MetricsForSlice); None when there is nothing to correct."""
    found = {(_columns(m.cross_slice_key.baseline_slice_key), _columns(m.cross_slice_key.comparison_slice_key))
             for m in metrics if m.HasField("cross_slice_key")}
    still_missing = [spec for spec in result.missing_cross_slices if not _pairs_found(spec, found)]
    if len(still_missing) == len(result.missing_cross_slices):
        return None
    fixed = type(result)()
    fixed.CopyFrom(result)
    del fixed.missing_cross_slices[:]
    fixed.missing_cross_slices.extend(still_missing)
    fixed.validation_ok = not (fixed.metric_validations_per_slice or fixed.missing_slices
                               or fixed.missing_cross_slices or fixed.missing_thresholds)
    return fixed


def validations_file(evaluation_uri: str) -> str:
    paths = tf.io.gfile.glob(os.path.join(evaluation_uri, "validations*.tfrecord"))
    if len(paths) != 1:
        raise RuntimeError(f"expected one TFMA validations file in {evaluation_uri}, found {len(paths)}")
    return paths[0]


class Executor(tfx_executor.Executor):
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
        if not tfma.__version__.startswith(CORRECTED_TFMA) or standard_component_specs.BLESSING_KEY not in output_dict:
            return
        evaluation_uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.EVALUATION_KEY])
        fixed = corrected(tfma.load_validation_result(evaluation_uri), tfma.load_metrics(evaluation_uri))
        if fixed is None:
            return
        with tf.io.TFRecordWriter(validations_file(evaluation_uri)) as writer:
            writer.write(fixed.SerializeToString())
        if fixed.validation_ok:
            blessing = artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY])
            not_blessed = os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME)
            if tf.io.gfile.exists(not_blessed):
                tf.io.gfile.remove(not_blessed)
            io_utils.write_string_file(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME), "")
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.BLESSED_VALUE)

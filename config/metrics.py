"""Names of the Evaluator's metrics and plots, shared by the pipeline's EvalConfig and the review.
(Apart from config/names.py, which is part of the trainer's cache key.)"""
from config import METRIC_CLASSES, PipelineConfig  # noqa: F401 - METRIC_CLASSES is part of this module's names

CURVE_METRICS = {"auc", "auc_precision_recall"}
# Metrics the Evaluator reports for every task, beside those the config puts thresholds on.
REPORTED_METRICS = {
    "binary": ["auc", "binary_accuracy"],
    "multiclass": ["sparse_categorical_accuracy"],
    "regression": ["mean_squared_error", "mean_absolute_error"],
}
EXAMPLE_COUNT = "example_count"
# TFMA's names for the confusion matrix at the decision threshold and the review's plots.
CONFUSION_MATRIX = "confusion_matrix_at_thresholds"
CURVES_PLOT = "confusion_matrix_plot"
CALIBRATION_PLOT = "calibration_plot"
MULTICLASS_MATRIX_PLOT = "multi_class_confusion_matrix_plot"
MEAN_LABEL, MEAN_PREDICTION = "mean_label", "mean_prediction"
# Per-group rates at the decision threshold, and the gaps between two groups (fairlearn's names).
GROUP_RATES = ("selection_rate", "true_positive_rate", "false_positive_rate", "false_negative_rate")
DEMOGRAPHIC_PARITY, EQUALIZED_ODDS = "demographic_parity_difference", "equalized_odds_difference"
GAPS = (DEMOGRAPHIC_PARITY, EQUALIZED_ODDS)
GAP_CLASSES = {DEMOGRAPHIC_PARITY: "DemographicParityDifference", EQUALIZED_ODDS: "EqualizedOddsDifference"}


def evaluated_metrics(config: PipelineConfig) -> list:
    """The model-quality metrics of the config's task: reported ones first, then thresholded ones."""
    evaluation = config.evaluation
    return list(dict.fromkeys(REPORTED_METRICS[config.task] + list(evaluation.thresholds)
                              + list(evaluation.change_thresholds)))

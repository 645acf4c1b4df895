"""Checks that the TFLite models answer like the SavedModel on the eval split."""
import dataclasses
from typing import List

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from trainer.export import SERVING_DEFAULT, SERVING_RAW, TRANSFORM_FEATURES


class ParityError(RuntimeError):
    """A TFLite model does not match the SavedModel closely enough; the message has the numbers."""


@dataclasses.dataclass
class ParityReport:
    examples: int
    max_score_diff: float
    metric_name: str
    saved_model_metric: float
    float_metric: float
    quantized_metric: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def raw_columns(serialized: List[bytes], raw_inputs: list) -> dict:
    """The raw-feature columns of tf.Examples, with each input's missing value where absent."""
    columns = {item["name"]: [] for item in raw_inputs}
    for record in serialized:
        feature_map = tf.train.Example.FromString(record).features.feature
        for item in raw_inputs:
            feature = feature_map.get(item["name"])
            kind = feature.WhichOneof("kind") if feature is not None else None
            values = list(getattr(feature, kind).value) if kind else []
            columns[item["name"]].append(values[0] if values else item["default"])
    result = {}
    for item in raw_inputs:
        values = columns[item["name"]]
        if item["dtype"] == "string":
            result[item["name"]] = np.array([v if isinstance(v, bytes) else str(v).encode() for v in values],
                                            dtype=object)
        else:
            result[item["name"]] = np.array(values, dtype=item["dtype"])
    return result


def tflite_scores(model: bytes, columns: dict, output_key: str) -> np.ndarray:
    runner = Interpreter(model_content=model).get_signature_runner(SERVING_RAW)
    return np.asarray(runner(**columns)[output_key])


def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the chance that a positive outscores a negative,
    ties counting half (average ranks)."""
    positive = np.asarray(labels).reshape(-1) == 1
    positives, negatives = int(positive.sum()), int((~positive).sum())
    if not positives or not negatives:
        raise ValueError(f"AUC needs both classes in the eval examples: {positives} positive, "
                         f"{negatives} negative; use more examples (edge.parity_examples)")
    _, inverse, counts = np.unique(np.asarray(scores).reshape(-1), return_inverse=True, return_counts=True)
    average_ranks = np.cumsum(counts) - (counts - 1) / 2
    ranks = average_ranks[inverse]
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def task_metric(task: str, labels: np.ndarray, scores: np.ndarray):
    """(name, value) of the metric the quantized model may lose at most max_metric_drop of."""
    if task == "binary":
        return "auc", binary_auc(labels, scores)
    if task == "multiclass":
        return "accuracy", float(np.mean(scores.argmax(axis=1) == labels))
    return "negative_mean_absolute_error", -float(np.mean(np.abs(scores.reshape(-1) - labels)))


def saved_model_outputs(saved_model, serialized: List[bytes], output_key: str, label_name: str):
    """A loaded SavedModel's scores for serialized tf.Examples, and their labels from its Transform graph."""
    examples = tf.constant(serialized)
    scores = saved_model.signatures[SERVING_DEFAULT](examples=examples)[output_key].numpy()
    labels = saved_model.signatures[TRANSFORM_FEATURES](examples=examples)[label_name].numpy().reshape(-1)
    return scores, labels


def check(saved_model, float_model: bytes, quantized_model: bytes, serialized: List[bytes],
          raw_inputs: list, output_key: str, label_name: str, task: str, max_score_diff: float,
          max_metric_drop: float) -> ParityReport:
    expected, labels = saved_model_outputs(saved_model, serialized, output_key, label_name)
    columns = raw_columns(serialized, raw_inputs)
    float_scores = tflite_scores(float_model, columns, output_key)
    quantized_scores = tflite_scores(quantized_model, columns, output_key)
    metric_name, reference = task_metric(task, labels, expected)
    report = ParityReport(
        examples=len(serialized),
        max_score_diff=float(np.max(np.abs(float_scores - expected))),
        metric_name=metric_name,
        saved_model_metric=reference,
        float_metric=task_metric(task, labels, float_scores)[1],
        quantized_metric=task_metric(task, labels, quantized_scores)[1],
    )
    problems = []
    if report.max_score_diff > max_score_diff:
        problems.append(f"float TFLite differs from the SavedModel by up to {report.max_score_diff:.2e} "
                        f"(allowed {max_score_diff:.0e})")
    if reference - report.quantized_metric > max_metric_drop:
        problems.append(f"quantized {metric_name} {report.quantized_metric:.4f} is "
                        f"{reference - report.quantized_metric:.4f} below the SavedModel's {reference:.4f} "
                        f"(allowed {max_metric_drop})")
    if problems:
        raise ParityError(f"TFLite export refused on {len(serialized)} eval examples: " + "; ".join(problems))
    return report

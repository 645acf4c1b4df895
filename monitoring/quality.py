"""Live quality per model version: the task's metrics on the requests whose labels arrived (the joined store
of `tfxline feedback ingest`), with 95% confidence intervals, the label lag, the version's metrics at
training time (its Evaluator's output, found through ML Metadata) beside them, and concept drift: the live
metric worse than at training by more than `monitoring.concept.max_drop`, with the whole interval beyond.

Intervals: AUC by DeLong's variance (midranks, Sun and Xu's fast form), accuracy by Wilson's score interval
(statsmodels), log loss, squared and absolute errors by the t interval of their mean (statsmodels)."""
import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import stats

from config import LOWER_IS_BETTER as EVALUATOR_LOWER_IS_BETTER, PipelineConfig
from config.metrics import REPORTED_METRICS
from monitoring import windows

LOG_LOSS = "log_loss"
LOWER_IS_BETTER = {LOG_LOSS, *EVALUATOR_LOWER_IS_BETTER}
EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] in the log loss, as Keras clips them


@dataclasses.dataclass
class Estimate:
    value: float
    low: float
    high: float


@dataclasses.dataclass
class Window:
    name: str                         # "all labelled", "newest", "previous"
    labels: int
    metrics: Dict[str, Optional[Estimate]]
    lag_seconds: Tuple[float, float]  # median and 90th percentile of label time minus request time


@dataclasses.dataclass
class VersionQuality:
    version: int
    requests: Optional[int]           # logged requests of the version (None: not known here)
    windows: List[Window]
    training: Dict[str, float]        # the Evaluator's metrics on the eval split
    training_source: str
    metric: str
    max_drop: float
    concept_drift: Optional[bool]     # None: not decided (the reason is in `note`)
    note: str = ""


def auc(labels: np.ndarray, scores: np.ndarray) -> Optional[Estimate]:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    m, n = len(positives), len(negatives)
    if m < 2 or n < 2:
        return None
    ranks = stats.rankdata(np.concatenate([positives, negatives]))
    value = (ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (ranks[:m] - stats.rankdata(positives)) / n
    v01 = 1 - (ranks[m:] - stats.rankdata(negatives)) / m
    half = 1.959963984540054 * math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    return Estimate(value, max(0.0, value - half), min(1.0, value + half))


def proportion(successes: np.ndarray) -> Optional[Estimate]:
    from statsmodels.stats.proportion import proportion_confint

    if not len(successes):
        return None
    count = int(successes.sum())
    low, high = proportion_confint(count, len(successes), alpha=0.05, method="wilson")
    return Estimate(count / len(successes), float(low), float(high))


def mean(values: np.ndarray) -> Optional[Estimate]:
    from statsmodels.stats.weightstats import DescrStatsW

    if len(values) < 2:
        return None
    low, high = DescrStatsW(values).tconfint_mean(alpha=0.05)
    value = float(values.mean())
    return Estimate(value, float(low) if np.isfinite(low) else value, float(high) if np.isfinite(high) else value)


def metrics(task: str, labels: np.ndarray, scores: List[List[float]], threshold: float = 0.5
            ) -> Dict[str, Optional[Estimate]]:
    """The task's live metrics with 95% intervals (None where there are too few labels)."""
    if task == "regression":
        predictions = np.array([s[0] for s in scores], np.float64)
        errors = predictions - labels
        return {"mean_squared_error": mean(errors ** 2), "mean_absolute_error": mean(np.abs(errors))}
    if task == "binary":
        p = np.clip(np.array([s[0] for s in scores], np.float64), EPSILON, 1 - EPSILON)
        y = labels.astype(np.int64)
        loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        return {"auc": auc(y, p), "binary_accuracy": proportion((p >= threshold) == (y == 1)), LOG_LOSS: mean(loss)}
    width = max(len(s) for s in scores)
    p = np.clip(np.array([s + [0.0] * (width - len(s)) for s in scores], np.float64), EPSILON, 1 - EPSILON)
    y = labels.astype(np.int64)
    inside = y < width
    loss = -np.log(np.where(inside, p[np.arange(len(y)), np.minimum(y, width - 1)], EPSILON))
    return {"sparse_categorical_accuracy": proportion(p.argmax(axis=1) == y), LOG_LOSS: mean(loss)}


def concept_metric(config: PipelineConfig) -> str:
    return config.monitoring.concept.metric or REPORTED_METRICS[config.task][0]


def training_metrics(config: PipelineConfig, version: int) -> Tuple[Dict[str, float], str]:
    """The version's overall metrics from its Evaluator (the eval split), through ML Metadata; ({}, why not)."""
    from metadata import lineage, store

    if config.metadata.kind == "sqlite" and not os.path.exists(store.sqlite_path(config)):
        return {}, f"no ML Metadata at {store.sqlite_path(config)}"
    artifact = lineage.evaluation(store.open_store(config), config.name, str(version))
    if artifact is None:
        return {}, f"ML Metadata has no evaluation of version {version}"
    import tensorflow_model_analysis as tfma

    with open(os.path.join(artifact.uri, "eval_config.json")) as handle:
        specs = json.load(handle)["evalConfig"].get("modelSpecs", [])
    candidate = next((s.get("name", "") for s in specs if not s.get("isBaseline")), "")
    found = {}
    for record in tfma.load_metrics(artifact.uri):
        if record.slice_key.single_slice_keys or record.HasField("cross_slice_key"):
            continue
        for kv in record.metric_keys_and_values:
            if kv.key.model_name == candidate and not kv.key.is_diff and kv.value.HasField("double_value"):
                found[kv.key.name] = kv.value.double_value.value
    return found, f"its evaluation ({artifact.uri})"


def _window(name: str, records: List[dict], config: PipelineConfig) -> Window:
    labels = np.array([r["label"] for r in records], np.float64)
    lags = np.array([(r["label_time_ms"] - r["request_time_ms"]) / 1000 for r in records], np.float64)
    lags = lags[np.isfinite(lags)]
    lag = (float(np.median(lags)), float(np.percentile(lags, 90))) if len(lags) else (math.nan, math.nan)
    return Window(name, len(records), metrics(config.task, labels, [r["scores"] for r in records],
                                              config.evaluation.fairness.decision_threshold), lag)


def version_quality(config: PipelineConfig, version: int, records: List[dict], requests: Optional[int],
                    window_rows: int, window_seconds: Optional[float], now_ms: float,
                    training: Optional[Tuple[Dict[str, float], str]] = None) -> VersionQuality:
    """`records`: the version's joined examples, oldest request first."""
    concept = config.monitoring.concept
    metric = concept_metric(config)
    rows = np.arange(len(records))
    if window_seconds is not None:
        times = np.array([r["request_time_ms"] for r in records], np.float64)
        newest, previous = windows.by_time(rows, times, window_seconds, now_ms)
    else:
        newest, previous = windows.by_count(rows, window_rows)
    found = [_window("all labelled", records, config)]
    if len(newest) and len(newest) < len(records):
        found.append(_window("newest", [records[i] for i in newest.rows], config))
    if len(previous):
        found.append(_window("previous", [records[i] for i in previous.rows], config))
    training_values, source = training if training is not None else training_metrics(config, version)
    quality = VersionQuality(version, requests, found, training_values, source, metric, concept.max_drop, None)
    live = found[1] if len(found) > 1 and found[1].name == "newest" else found[0]
    estimate = live.metrics.get(metric)
    if metric not in training_values:
        quality.note = f"concept drift not checked: no training-time {metric} ({source})"
    elif live.labels < concept.min_labels or estimate is None:
        quality.note = (f"concept drift not checked: {live.labels:,} labels in the {live.name} window "
                        f"(monitoring.concept.min_labels is {concept.min_labels})")
    elif metric in LOWER_IS_BETTER:
        quality.concept_drift = bool(estimate.low > training_values[metric] + concept.max_drop)
    else:
        quality.concept_drift = bool(estimate.high < training_values[metric] - concept.max_drop)
    return quality

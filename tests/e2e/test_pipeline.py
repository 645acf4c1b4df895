"""The whole pipeline, run for real: LocalDagRunner, Beam DirectRunner, SQLite MLMD."""
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from metadata import runs
from pipeline import summary
from tests.helpers import eval_examples, progress_fields, pushed_versions, store_for

pytestmark = pytest.mark.e2e

COMPONENTS = ["CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "AnomalyGate",
              "DataProfiler", "latest_drift_baseline_resolver", "DriftGate", "Transform", "Trainer",
              "latest_blessed_model_resolver", "Evaluator", "Pusher", "DriftBaselinePublisher", "TFLiteExport"]
_STATE = metadata_store_pb2.Execution.State


def test_every_component_ran_and_is_recorded_in_mlmd(taxi_run):
    executions = runs.executions_by_component(store_for(taxi_run.config), taxi_run.config.name)
    assert sorted(executions) == sorted(COMPONENTS)
    for component in COMPONENTS:
        assert executions[component][0].last_known_state == _STATE.COMPLETE, component
    started = [progress_fields(line)[0] for line in taxi_run.output if line.endswith("running")]
    assert sorted(started) == sorted(COMPONENTS)
    order = {name: index for index, name in enumerate(started)}
    for before, after in [("CsvExampleGen", "StatisticsGen"), ("StatisticsGen", "ExampleValidator"),
                          ("ExampleValidator", "AnomalyGate"), ("CsvExampleGen", "DataProfiler"),
                          ("DataProfiler", "DriftGate"), ("latest_drift_baseline_resolver", "DriftGate"),
                          ("AnomalyGate", "Transform"), ("DriftGate", "Transform"), ("Transform", "Trainer"),
                          ("Trainer", "Evaluator"), ("Evaluator", "Pusher"), ("Pusher", "DriftBaselinePublisher"),
                          ("Pusher", "TFLiteExport")]:
        assert order[before] < order[after], (before, after)


def test_blessed_model_is_pushed_in_tf_serving_layout(taxi_run):
    base = os.path.join(taxi_run.config.output.serving, taxi_run.config.name)
    versions = pushed_versions(taxi_run.config)
    assert len(versions) == 1 and versions[0].isdigit()
    version_dir = os.path.join(base, versions[0])
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.path.isfile(os.path.join(version_dir, "variables", "variables.index"))
    assert not [name for name in os.listdir(base) if name.startswith(".")]  # no staging left behind


def test_pushed_model_scores_serialized_examples(taxi_run):
    version_dir = os.path.join(taxi_run.config.output.serving, taxi_run.config.name,
                               pushed_versions(taxi_run.config)[-1])
    model = tf.saved_model.load(version_dir)
    examples = eval_examples(taxi_run.config, limit=100)
    scores = model.signatures["serving_default"](examples=tf.constant(examples))["scores"].numpy()
    assert scores.shape == (100, 1)
    assert np.all((scores >= 0) & (scores <= 1))


def test_summary_reports_rows_metrics_blessing_and_push(taxi_run):
    result = summary.collect(taxi_run.config)
    assert sum(result["rows"].values()) == 3000 and set(result["rows"]) == {"train", "eval"}
    assert result["anomalies"] == []
    assert result["blessed"] and result["pushed"]
    assert result["metrics"]["auc"]["candidate"] >= taxi_run.config.evaluation.thresholds["auc"]
    text = summary.format_summary(result, 12.3)
    assert "blessed     yes" in text and f"version {result['pushed_version']}" in text


def test_reruns_reuse_executions(taxi_run):
    """Run 2 reuses everything up to the Trainer; its Evaluator runs once more because the first blessed
    model now exists as a baseline (an input change), and its DriftGate because run 1 published the first
    drift baseline. Its Pusher finds the same model already published, so no new baseline is published
    (the DriftBaselinePublisher's condition is false). Run 3 reuses everything."""
    from tests.conftest import run_pipeline

    versions_before = pushed_versions(taxi_run.config)
    store = store_for(taxi_run.config)
    resolvers = ["latest_blessed_model_resolver", "latest_drift_baseline_resolver"]
    for expected_new in (sorted(["Evaluator", "Pusher", "TFLiteExport", "DriftGate"] + resolvers), resolvers):
        _, lines, error = run_pipeline(taxi_run.root / "config.yaml")
        assert error is None
        latest = runs.latest_run(store, taxi_run.config.name)
        # Resolvers are system nodes: they resolve again on every run and have no cache.
        assert sorted(name for name, run in latest.items() if not run.cached) == expected_new
        states = {progress_fields(line)[0]: progress_fields(line)[1] for line in lines if not line.endswith("running")}
        assert states["DriftBaselinePublisher"] == "skipped"
        assert sum(state == "cached" for state in states.values()) == len(COMPONENTS) - len(expected_new) - 1
    assert summary.collect(taxi_run.config)["has_baseline"]
    assert pushed_versions(taxi_run.config) == versions_before  # the same model is not pushed twice

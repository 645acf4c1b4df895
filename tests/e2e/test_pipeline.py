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
              "DataProfiler", "ServingBaseline", "DriftGate", "Transform", "Trainer", "Evaluator", "Pusher",
              "DriftBaselinePublisher", "TFLiteExport"]
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
                          ("DataProfiler", "DriftGate"), ("ServingBaseline", "DriftGate"),
                          ("AnomalyGate", "Transform"), ("DriftGate", "Transform"), ("Transform", "Trainer"),
                          ("Trainer", "Evaluator"), ("ServingBaseline", "Evaluator"), ("Evaluator", "Pusher"),
                          ("Pusher", "DriftBaselinePublisher"),
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
    """Run 2 reuses everything up to the Trainer; the serving directory now labels the first model
    `stable`, so ServingBaseline runs again, and the Evaluator compares with that model and the DriftGate
    with its training data (input changes); the Pusher, TFLiteExport and DriftBaselinePublisher follow.
    The Pusher finds the same model already published, so no new drift baseline is published. Run 3
    changes nothing and reuses every execution."""
    from tests.conftest import run_pipeline

    versions_before = pushed_versions(taxi_run.config)
    store = store_for(taxi_run.config)
    for expected_new in (["DriftBaselinePublisher", "DriftGate", "Evaluator", "Pusher", "ServingBaseline",
                          "TFLiteExport"], []):
        _, lines, error = run_pipeline(taxi_run.root / "config.yaml")
        assert error is None
        latest = runs.latest_run(store, taxi_run.config.name)
        assert sorted(name for name, run in latest.items() if not run.cached) == expected_new
        states = {progress_fields(line)[0]: progress_fields(line)[1] for line in lines if not line.endswith("running")}
        assert sum(state == "cached" for state in states.values()) == len(COMPONENTS) - len(expected_new)
        publisher = latest["DriftBaselinePublisher"].output("baseline")
        assert publisher.custom_properties["published"].int_value == 0
    assert summary.collect(taxi_run.config)["has_baseline"]
    baseline = runs.latest_run(store, taxi_run.config.name)["ServingBaseline"].output("model")
    assert str(baseline.custom_properties["serving_version"].int_value) == versions_before[0]
    assert pushed_versions(taxi_run.config) == versions_before  # the same model is not pushed twice


def test_the_baseline_follows_the_serving_directory_not_the_last_blessed_model(taxi_run, tmp_path):
    """After a rollback to an older version, the next run compares with what serves."""
    import shutil

    from serving import release_state
    from tests.conftest import run_pipeline

    serving_dir, name = taxi_run.config.output.serving, taxi_run.config.name
    first = int(pushed_versions(taxi_run.config)[0])
    older = first - 1000  # an older, still complete version: a copy of the first
    shutil.copytree(os.path.join(serving_dir, name, str(first)), os.path.join(serving_dir, name, str(older)))
    def label_stable(version):
        def transition(release):
            release.labels[release_state.STABLE] = version
            release.record("rollback", version)
        release_state.update_release(serving_dir, name, transition)

    label_stable(older)
    try:
        _, _, error = run_pipeline(taxi_run.root / "config.yaml")
        assert error is None
        latest = runs.latest_run(store_for(taxi_run.config), name)
        assert not latest["ServingBaseline"].cached and not latest["Evaluator"].cached
        model = latest["ServingBaseline"].output("model")
        assert model.custom_properties["serving_version"].int_value == older
        assert os.path.isfile(os.path.join(model.uri, "Format-Serving", "saved_model.pb"))
    finally:
        label_stable(first)
        shutil.rmtree(os.path.join(serving_dir, name, str(older)))

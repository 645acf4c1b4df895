"""ServingBaseline and the Evaluator's executor on a small real model (tests/tiny_model.py): the
baseline is the serving directory's stable version (on local disk and through TensorFlow's
filesystems, as gs:// on Kubeflow), an empty baseline lets the Evaluator run without one (TFX's own
executor cannot), and a threshold parameter replaces the config's bound."""
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
import tensorflow as tf
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import standard_artifacts

from components.drift_baseline import executor as publisher
from components.serving_baseline import executor as baseline
from pipeline.pipeline import create_pipeline
from serving import layout, release_state
from tests.tiny_model import _exec_properties
from tfxline import DataProfile, DriftBaseline


def _artifact(kind, uri):
    artifact = kind()
    artifact.uri = str(uri)
    return artifact


def run_baseline(serving_dir: str, name: str, uri, stable_when_built=None, drift_baselines=None):
    """ServingBaseline's executor; its drift baseline output is appended to `drift_baselines`."""
    model = _artifact(standard_artifacts.Model, uri)
    drift = _artifact(DriftBaseline, f"{uri}-drift")
    baseline.Executor().Do({}, {"model": [model], "drift_baseline": [drift]},
                           {"serving_dir": serving_dir, "model_name": name, "stable_when_built": stable_when_built})
    if drift_baselines is not None:
        drift_baselines.append(drift)
    return model


def test_the_drift_baseline_is_the_stable_versions_training_profile(tiny_model, tmp_path):
    """DriftBaselinePublisher puts a new version's profile beside it; ServingBaseline hands the stable
    version's profile to the drift gate; a re-push of the same model publishes nothing."""
    serving_dir = tmp_path / "serving"
    shutil.copytree(os.path.dirname(tiny_model.serving_base), serving_dir)
    name, version = os.path.basename(tiny_model.serving_base), tiny_model.version
    found = []
    run_baseline(str(serving_dir), name, tmp_path / "before", drift_baselines=found)
    assert baseline.is_empty(found[0])  # the stable version has no profile yet
    profile = _artifact(DataProfile, tmp_path / "profile")
    (tmp_path / "profile" / "Split-train").mkdir(parents=True)
    (tmp_path / "profile" / "Split-train" / "FeatureStats.pb").write_bytes(b"statistics")
    profile.set_string_custom_property("split_names", '["train"]')
    profile.set_int_custom_property("span", 4)
    pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
    pushed.set_string_custom_property("pushed_version", version)
    pushed.set_string_custom_property("pushed_destination", str(serving_dir / name / version))
    pushed.set_int_custom_property("new_version", 1)
    published = _artifact(DriftBaseline, tmp_path / "published")
    publisher.Executor().Do({"profile": [profile], "pushed_model": [pushed]}, {"baseline": [published]}, {})
    assert published.get_int_custom_property("published") == 1
    assert os.listdir(serving_dir / name) == [version]  # the model's directory holds its versions only
    found = []
    run_baseline(str(serving_dir), name, tmp_path / "after", drift_baselines=found)
    drift = found[0]
    assert baseline.serving_version(drift) == int(version) and drift.get_int_custom_property("span") == 4
    assert (Path(drift.uri) / "Split-train" / "FeatureStats.pb").read_bytes() == b"statistics"
    pushed.set_int_custom_property("new_version", 0)
    again = _artifact(DriftBaseline, tmp_path / "again")
    publisher.Executor().Do({"profile": [profile], "pushed_model": [pushed]}, {"baseline": [again]}, {})
    assert again.get_int_custom_property("published") == 0 and not os.path.exists(tmp_path / "again")


def test_the_stable_version_is_copied_into_the_baseline(tiny_model, tmp_path):
    serving_dir, name = os.path.split(tiny_model.serving_base)
    model = run_baseline(serving_dir, name, tmp_path / "baseline", stable_when_built=int(tiny_model.version))
    assert baseline.serving_version(model) == int(tiny_model.version)
    assert model.get_string_custom_property("serving_path") == os.path.join(tiny_model.serving_base,
                                                                             tiny_model.version)
    copied = tf.saved_model.load(str(tmp_path / "baseline" / "Format-Serving"))
    assert "serving_default" in copied.signatures


def test_no_stable_version_gives_an_empty_baseline(tmp_path):
    model = run_baseline(str(tmp_path / "serving"), "taxi", tmp_path / "baseline")
    assert baseline.serving_version(model) == 0 and baseline.is_empty(model)
    assert os.listdir(tmp_path / "baseline") == []
    assert baseline.serving_version(_artifact(standard_artifacts.Model, tmp_path)) is None  # not a ServingBaseline


def test_a_stable_label_that_moved_since_the_pipeline_was_built_stops_the_run(tiny_model, tmp_path):
    serving_dir, name = os.path.split(tiny_model.serving_base)
    with pytest.raises(baseline.ServingStateChanged, match=f"changed from 5 to {tiny_model.version}"):
        run_baseline(serving_dir, name, tmp_path / "baseline", stable_when_built=5)


def test_the_baseline_reads_a_serving_directory_through_tensorflows_filesystems(tmp_path):
    """ram:// is reached only through tf.io.gfile, as gs:// is from a Kubeflow pod; the version is
    pushed there by the Pusher's own publishing code."""
    class Half(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            return {"y": x / 2}

    module = Half()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"serving_default": module.__call__})
    serving_dir = f"ram://serving-{uuid.uuid4().hex}"
    version = release_state.push(str(tmp_path / "model"), layout.join(serving_dir, "taxi"), now=1_700_000_000)
    target = f"ram://baseline-{uuid.uuid4().hex}"
    model = run_baseline(serving_dir, "taxi", target)
    assert baseline.serving_version(model) == int(version)
    assert model.get_string_custom_property("serving_path") == f"{serving_dir}/taxi/{version}"
    assert tf.io.gfile.exists(f"{target}/Format-Serving/saved_model.pb")


@pytest.fixture(scope="module")
def evaluator(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluator_pipeline")
    config = tiny_model.config
    pipeline = create_pipeline(config, pipeline_root=str(root), data_path=config.data.path,
                               schema_path=config.schema_.curated_path, serving_dir=str(root / "serving"),
                               edge_dir=str(root / "edge"))
    return {component.id: component for component in pipeline.components}["Evaluator"]


def evaluate(component, tiny_model, baseline_model, out, executor_class=None, **parameters):
    from tfx.dsl.components.base import base_beam_executor

    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"], tmp_dir=str(out / "tmp"),
        unique_id="Evaluator")
    examples = _artifact(standard_artifacts.Examples, tiny_model.examples_uri)
    examples.split_names = json.dumps(["train", "eval"])
    model = _artifact(standard_artifacts.Model, os.path.dirname(tiny_model.saved_model_dir))
    evaluation = _artifact(standard_artifacts.ModelEvaluation, out / "evaluation")
    blessing = _artifact(standard_artifacts.ModelBlessing, out / "blessing")
    for artifact in (evaluation, blessing):
        os.makedirs(artifact.uri, exist_ok=True)
    (executor_class or component.executor_spec.executor_class)(context).Do(
        {"examples": [examples], "model": [model], "baseline_model": [baseline_model]},
        {"evaluation": [evaluation], "blessing": [blessing]}, {**_exec_properties(component), **parameters})
    return evaluation, blessing


def test_an_empty_baseline_is_dropped_and_the_model_blessed_on_thresholds(evaluator, tiny_model, tmp_path):
    import tensorflow_model_analysis as tfma

    empty = run_baseline(str(tmp_path / "serving"), "taxi", tmp_path / "baseline")
    # Bounds any model meets: the blessing then depends on the baseline's (absent) change thresholds only.
    evaluation, blessing = evaluate(evaluator, tiny_model, empty, tmp_path, threshold_auc=0.0,
                                    threshold_binary_accuracy=0.0)
    assert blessing.get_int_custom_property("blessed") == 1
    result = tfma.load_eval_result(evaluation.uri)  # one model, no candidate/baseline pair
    assert result.get_metrics_for_all_slices()
    # TFX's own executor takes the empty artifact for a model and fails to load it.
    with pytest.raises(Exception):
        evaluate(evaluator, tiny_model, empty, tmp_path / "tfx", executor_class=tfx_evaluator.Executor)


def test_a_threshold_parameter_replaces_the_configs_bound(evaluator, tiny_model, tmp_path):
    import tensorflow_model_analysis as tfma

    serving_dir, name = os.path.split(tiny_model.serving_base)
    stable = run_baseline(serving_dir, name, tmp_path / "baseline")
    evaluation, blessing = evaluate(evaluator, tiny_model, stable, tmp_path, threshold_auc=0.9999,
                                    threshold_binary_accuracy=0.0)
    assert blessing.get_int_custom_property("blessed") == 0
    failures = [failure.metric_key.name for per_slice in tfma.load_validation_result(evaluation.uri)
                .metric_validations_per_slice for failure in per_slice.failures]
    assert failures == ["auc"]
    # The baseline was compared: its metrics are in the evaluation.
    assert tfma.load_eval_result(evaluation.uri, model_name="baseline").get_metrics_for_all_slices()


def recording_run_fn(fn_args) -> None:
    """A run_fn that writes down the epochs it was given instead of training."""
    os.makedirs(fn_args.serving_model_dir, exist_ok=True)
    with open(os.path.join(fn_args.serving_model_dir, "epochs.json"), "w") as handle:
        json.dump(fn_args.custom_config["config"]["training"]["epochs"], handle)


def test_the_epochs_parameter_reaches_the_run_fn_and_the_model_records_it(tiny_model, tmp_path):
    from components.trainer import executor as trainer

    config = tiny_model.config
    pipeline = create_pipeline(config, pipeline_root=str(tmp_path), data_path=config.data.path,
                               schema_path=config.schema_.curated_path, serving_dir=str(tmp_path / "serving"),
                               edge_dir=str(tmp_path / "edge"))
    component = {c.id: c for c in pipeline.components}["Trainer"]
    properties = {**_exec_properties(component), "run_fn": f"{__name__}.recording_run_fn", "epochs": 7}
    assert _exec_properties(component)["epochs"] == config.training.epochs == 2
    examples = _artifact(standard_artifacts.Examples, tiny_model.examples_uri)
    examples.split_names = json.dumps(["train", "eval"])
    schema = _artifact(standard_artifacts.Schema, os.path.join(os.path.dirname(tiny_model.examples_uri), "schema"))
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    trainer.Executor().Do(
        {"examples": [examples], "transform_graph": [_artifact(standard_artifacts.TransformGraph,
                                                               tiny_model.transform_uri)], "schema": [schema]},
        {"model": [model], "model_run": [_artifact(standard_artifacts.ModelRun, tmp_path / "model_run")]}, properties)
    with open(tmp_path / "model" / "Format-Serving" / "epochs.json") as handle:
        assert json.load(handle) == 7
    assert model.get_int_custom_property("epochs") == 7

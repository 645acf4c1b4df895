"""The TFMA EvalConfig built from the pipeline config: what TFMA itself reads from it."""
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_specs

from config import load_config
from pipeline.pipeline import eval_config
from tests.conftest import write_config


def test_metrics_thresholds_and_curve_points_reach_tfma(tmp_path):
    config = load_config(str(write_config(tmp_path, evaluation={
        "thresholds": {"auc": 0.7, "binary_accuracy": 0.6, "auc_precision_recall": 0.5},
        "curve_thresholds": 250})))
    tfma_config = eval_config(config)
    metrics = {m.class_name: metric_specs.metric_instance(m) for m in tfma_config.metrics_specs[0].metrics}
    assert {"AUC", "BinaryAccuracy", "AUCPrecisionRecall"} <= set(metrics)
    assert metrics["AUC"].get_config()["num_thresholds"] == 250
    assert metrics["AUCPrecisionRecall"].get_config()["num_thresholds"] == 250
    assert "num_thresholds" not in metrics["BinaryAccuracy"].get_config()
    thresholds = metric_specs.metric_thresholds_from_metrics_specs(tfma_config.metrics_specs)
    # Each key maps to [(slice spec, threshold)]; the whole eval split gates the blessing.
    bounds = {key.name: [(spec.feature_keys, t.lower_bound.value) for spec, t in specs]
              for key, specs in thresholds.items() if isinstance(specs[0][1], tfma.GenericValueThreshold)
              and isinstance(specs[0][0], tfma.SlicingSpec)}
    drops = [(key.name, t.absolute.value) for key, specs in thresholds.items() for _, t in specs
             if isinstance(t, tfma.GenericChangeThreshold)]
    assert bounds == {"auc": [([], 0.7)], "binary_accuracy": [([], 0.6)], "auc_precision_recall": [([], 0.5)]}
    assert drops == [("auc", -0.01)]  # the shipped config's change threshold, kept by the merge
    assert tfma_config.model_specs[0].model_type == "tf_generic"


def test_fairness_config_becomes_group_slices_pair_specs_and_cross_slice_thresholds(tmp_path):
    config = load_config(str(write_config(tmp_path, evaluation={
        "thresholds": {"auc": 0.7}, "slices": [[], ["trip_start_hour"]],
        "fairness": {"features": ["company", "payment_type"], "decision_threshold": 0.4, "min_group_size": 25,
                     "max_gaps": {"company": {"demographic_parity_difference": 0.2}}}})))
    tfma_config = eval_config(config)
    assert [list(s.feature_keys) for s in tfma_config.slicing_specs] == [[], ["trip_start_hour"], ["company"],
                                                                         ["payment_type"]]
    assert [(list(c.baseline_spec.feature_keys), [list(s.feature_keys) for s in c.slicing_specs])
            for c in tfma_config.cross_slicing_specs] == [(["company"], [["company"]]),
                                                          (["payment_type"], [["payment_type"]])]
    metrics = {}
    for metric in tfma_config.metrics_specs[0].metrics:
        instance = metric_specs.metric_instance(metric)  # TFMA loads the gap metrics by module path
        metrics[instance.name] = instance
    for name in ("selection_rate", "true_positive_rate", "false_positive_rate", "false_negative_rate",
                 "confusion_matrix_at_thresholds"):
        assert metrics[name].get_config()["thresholds"] == [0.4], name
    for name in ("demographic_parity_difference", "equalized_odds_difference"):
        assert metrics[name].get_config() == {"decision_threshold": 0.4, "min_group_size": 25, "name": name}
    thresholds = metric_specs.metric_thresholds_from_metrics_specs(tfma_config.metrics_specs)
    gated = {key.name: [(list(spec.baseline_spec.feature_keys), t.upper_bound.value) for spec, t in specs]
             for key, specs in thresholds.items() if isinstance(specs[0][0], tfma.CrossSlicingSpec)}
    # Only the bounded gap of the bounded feature gates; payment_type and equalized odds are reported only.
    assert gated == {"demographic_parity_difference": [(["company"], 0.2)]}


def test_without_fairness_features_there_are_no_pairs(tmp_path):
    config = load_config(str(write_config(tmp_path, evaluation={"thresholds": {"auc": 0.7},
                                                                "fairness": {"features": []}})))
    tfma_config = eval_config(config)
    assert not tfma_config.cross_slicing_specs
    names = {m.class_name for m in tfma_config.metrics_specs[0].metrics}
    assert "DemographicParityDifference" not in names and "ConfusionMatrixAtThresholds" in names


def test_review_settings_do_not_change_the_trainers_cache_key(tmp_path):
    from pipeline.pipeline import create_pipeline

    def trainer_config(directory, **overrides):
        config = load_config(str(write_config(tmp_path / directory, **overrides)))
        pipeline = create_pipeline(config, pipeline_root=str(tmp_path / "root"), data_path=config.data.path,
                                   schema_path=config.schema_.curated_path, serving_dir=str(tmp_path / "s"),
                                   edge_dir=str(tmp_path / "e"))
        return next(c for c in pipeline.components if c.id == "Trainer").exec_properties["custom_config"]

    plain = trainer_config("a")
    assert trainer_config("b", review={"min_count": 20, "min_slice_size": 5, "model_card": "/elsewhere.yaml"}) == plain
    assert trainer_config("c", training={"epochs": 3}) != plain

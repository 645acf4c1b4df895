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
    assert set(metrics) == {"AUC", "BinaryAccuracy", "AUCPrecisionRecall"}
    assert metrics["AUC"].get_config()["num_thresholds"] == 250
    assert metrics["AUCPrecisionRecall"].get_config()["num_thresholds"] == 250
    assert "num_thresholds" not in metrics["BinaryAccuracy"].get_config()
    thresholds = metric_specs.metric_thresholds_from_metrics_specs(tfma_config.metrics_specs)
    # Each key maps to [(slice spec, threshold)]; the whole eval split gates the blessing.
    bounds = {key.name: [(spec.feature_keys, t.lower_bound.value) for spec, t in specs]
              for key, specs in thresholds.items() if isinstance(specs[0][1], tfma.GenericValueThreshold)}
    drops = [(key.name, t.absolute.value) for key, specs in thresholds.items() for _, t in specs
             if isinstance(t, tfma.GenericChangeThreshold)]
    assert bounds == {"auc": [([], 0.7)], "binary_accuracy": [([], 0.6)], "auc_precision_recall": [([], 0.5)]}
    assert drops == [("auc", -0.01)]  # the shipped config's change threshold, kept by the merge
    assert tfma_config.model_specs[0].model_type == "tf_generic"

"""Config validation: a bad config fails in one line naming the field, before any TFX work."""
import subprocess
import sys

import pytest
import yaml

from config import ConfigError, load_config
from tests.conftest import TAXI_CONFIG, write_config


def test_default_config_loads_and_resolves_packaged_paths():
    config = load_config(TAXI_CONFIG)
    assert config.name == "taxi" and config.task == "binary"
    assert config.data.path.endswith("chicago_taxi_pipeline/data/simple")
    assert config.schema_.curated_path.endswith("schema/taxi/schema.pbtxt")
    assert {f.kind for f in config.features} == {"numeric", "bucketized", "categorical_int", "categorical_string"}


@pytest.mark.parametrize("overrides, expected", [
    ({"task": "ranking"}, "task"),
    ({"features": [{"name": "fare", "kind": "numeric"}, {"name": "fare", "kind": "numeric"}]}, "listed more than once"),
    ({"features": [{"name": "fare", "kind": "bucketized", "buckets": 1}]}, "features.0.bucketized.buckets"),
    ({"features": [{"name": "fare", "kind": "text"}]}, "features.0"),
    ({"label": {"rule": "above", "threshold": None}}, "needs threshold"),
    ({"evaluation": {"thresholds": {"mean_squared_error": 1.0}}}, "not one of"),
    ({"evaluation": {"thresholds": {"auc": 0.7}, "slices": [["no_such_feature"]]}}, "evaluation.slices"),
    ({"data": {"path": "/no/such/directory"}}, "data.path"),
    ({"data": {"span_pattern": "span-*/data.csv"}}, "{SPAN}"),
    ({"schema": {"source": "curated", "curated_path": "/no/such/schema.pbtxt"}}, "schema.curated_path"),
    ({"name": "Taxi Pipeline"}, "name"),
    ({"unknown_section": 1}, "unknown_section"),
    ({"evaluation": {"thresholds": {"auc": 0.7}, "fairness": {"features": ["driver"]}}},
     "evaluation.fairness.features: 'driver' is not a feature"),
    ({"evaluation": {"thresholds": {"auc": 0.7}, "fairness": {"features": ["company"], "max_gaps": {
        "payment_type": {"demographic_parity_difference": 0.1}}}}}, "'payment_type' is not one of fairness.features"),
    ({"evaluation": {"thresholds": {"auc": 0.7}, "fairness": {"features": ["company"], "max_gaps": {
        "company": {"equalized_odds_difference": 1.5}}}}}, "equalized_odds_difference"),
    ({"evaluation": {"thresholds": {"auc": 0.7}, "fairness": {"decision_threshold": 1.0}}},
     "evaluation.fairness.decision_threshold"),
    ({"task": "regression", "evaluation": {"thresholds": {"mean_squared_error": 1.0}, "change_thresholds": {},
                                           "fairness": {"features": ["company"]}}}, "need task 'binary'"),
    ({"review": {"min_count": 0}}, "review.min_count"),
])
def test_bad_config_is_one_clear_error(tmp_path, overrides, expected):
    path = write_config(tmp_path, **overrides)
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("name: taxi\nfeatures: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(str(path))


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/no/such/config.yaml")


def test_cli_rejects_bad_config_in_one_line_without_importing_tensorflow(tmp_path):
    path = write_config(tmp_path, training={"epochs": 0})
    code = ("import sys; from pipeline.cli import main; rc = main(['run', '--config', sys.argv[1]]); "
            "print('tensorflow' in sys.modules); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout.strip() == "False"
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("tfxline: config error:") and "training.epochs" in errors[0]


def test_a_binary_label_column_of_zeros_and_ones_needs_no_rule(tmp_path):
    config = load_config(str(write_config(tmp_path / "a", label={"column": "defective", "rule": "none",
                                                                   "threshold": None, "of_column": None})))
    assert config.task == "binary" and config.label.rule == "none" and config.label.classes is None
    with pytest.raises(ConfigError, match="label.classes: task 'binary' needs 2 classes, got 3"):
        load_config(str(write_config(tmp_path / "b", label={"column": "kind", "rule": "none", "threshold": None,
                                                             "of_column": None, "classes": ["a", "b", "c"]})))


def test_the_custom_config_carries_the_model_settings_only():
    """What Transform and the Trainer get (and a Kubeflow spec carries): no paths, outputs or runners."""
    from config import ModelConfig

    config = load_config(TAXI_CONFIG)
    custom_config = config.to_custom_config()
    assert set(custom_config) == {"task", "features", "label", "training"}
    again = ModelConfig.model_validate(yaml.safe_load(yaml.safe_dump(custom_config)))
    assert again == config.model_settings()
    assert again.feature_names == config.feature_names


def test_the_model_card_yaml_defaults_to_the_one_beside_the_config(tmp_path):
    config = load_config(str(write_config(tmp_path)))
    assert config.review.model_card == str(tmp_path / "config.model_card.yaml")
    config = load_config(str(write_config(tmp_path / "b", review={"model_card": "cards/taxi.yaml"})))
    assert config.review.model_card == str(tmp_path / "b" / "cards" / "taxi.yaml")
    assert load_config(TAXI_CONFIG).review.model_card.endswith("config/taxi.model_card.yaml")

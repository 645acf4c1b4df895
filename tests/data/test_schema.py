"""The curated taxi schema and the curation that produces it."""
import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from config import load_config
from schema.curate import MAX_DOMAIN_SIZE, SERVING, TRAINING, curate
from tests.conftest import TAXI_CONFIG


@pytest.fixture(scope="module")
def config():
    return load_config(TAXI_CONFIG)


@pytest.fixture(scope="module")
def curated(config):
    return tfdv.load_schema_text(config.schema_.curated_path)


def test_label_is_not_expected_at_serving(curated, config):
    assert list(curated.default_environment) == [TRAINING, SERVING]
    label = tfdv.get_feature(curated, config.label.column)
    assert list(label.not_in_environment) == [SERVING]
    for name in config.feature_names:
        assert SERVING not in tfdv.get_feature(curated, name).not_in_environment


def test_every_feature_has_drift_and_skew_comparators(curated, config):
    for name in config.feature_names:
        feature = tfdv.get_feature(curated, name)
        assert feature.HasField("drift_comparator") and feature.HasField("skew_comparator"), name


def test_small_categorical_domains_only(curated):
    payment = tfdv.get_domain(curated, "payment_type")
    assert {"Cash", "Credit Card"} <= set(payment.value)
    assert not tfdv.get_feature(curated, "company").HasField("domain")
    assert all(len(d.value) <= MAX_DOMAIN_SIZE for d in curated.string_domain)


def test_presence_and_size_constraints(curated, config):
    assert curated.dataset_constraints.min_examples_count > 0
    assert tfdv.get_feature(curated, "fare").presence.min_fraction == 1.0
    assert tfdv.get_feature(curated, config.label.column).presence.min_fraction == 1.0
    used = set(config.feature_names) | {config.label.column}
    for feature in curated.feature:
        assert feature.value_count.max == 1
        required = feature.name in used and feature.presence.min_fraction == 1.0
        assert feature.value_count.min == (1 if required else 0), feature.name
    assert tfdv.get_feature(curated, "pickup_census_tract").presence.min_count == 0


def test_curate_rejects_a_config_that_does_not_fit_the_data(config):
    schema = schema_pb2.Schema()
    schema.feature.add(name="fare", type=schema_pb2.FLOAT)
    with pytest.raises(ValueError, match="not in the data"):
        curate(schema, config)


def test_curate_drops_large_string_domains(config):
    schema = tfdv.load_schema_text(config.schema_.curated_path)
    domain = schema.string_domain.add(name="company")
    domain.value.extend(f"company {i}" for i in range(MAX_DOMAIN_SIZE + 1))
    tfdv.get_feature(schema, "company").domain = "company"
    curated = curate(schema, config)
    assert not tfdv.get_feature(curated, "company").HasField("domain")
    assert "company" not in {d.name for d in curated.string_domain}


def test_draft_from_data_is_curated(tmp_path, small_taxi_dir):
    from pipeline.cli import main

    from tests.conftest import write_config

    config_path = write_config(tmp_path, data={"path": str(small_taxi_dir)})
    output = tmp_path / "draft" / "schema.pbtxt"
    assert main(["schema", "draft", "--config", str(config_path), "--output", str(output)]) == 0
    draft = tfdv.load_schema_text(str(output))
    assert list(draft.default_environment) == [TRAINING, SERVING]
    assert list(tfdv.get_feature(draft, "tips").not_in_environment) == [SERVING]
    assert {d.name for d in draft.string_domain} == {"payment_type"}

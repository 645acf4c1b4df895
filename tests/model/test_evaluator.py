"""The pipeline's Evaluator executor on the tiny model: TFMA's evaluation with the fairness gate, the
corrected validation result written back, and the blessing that follows from it."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.types import artifact_utils, standard_artifacts

from components.tflite_export.parity import saved_model_outputs

from config import FairnessConfig
from pipeline.pipeline import create_pipeline
from review import evaluation
from tests.helpers import split_examples
from tests.tiny_model import _artifact, _execute


@pytest.fixture(scope="module")
def median_score(tiny_model):
    """A decision threshold that selects about half the eval rows of this small, weak model."""
    model = tf.saved_model.load(tiny_model.saved_model_dir)
    scores, _ = saved_model_outputs(model, split_examples(tiny_model.examples_uri, "eval", 1000), "scores",
                                    tiny_model.config.label.name)
    return round(float(np.median(scores)), 4)


def run_evaluator(tiny_model, tmp_path, threshold, max_gaps):
    config = tiny_model.config
    fairness = FairnessConfig.model_validate({"features": ["company"], "min_group_size": 5, "max_gaps": max_gaps,
                                              "decision_threshold": threshold})
    config = config.model_copy(update={"evaluation": config.evaluation.model_copy(update={
        "thresholds": {"auc": 0.0}, "change_thresholds": {}, "fairness": fairness})})
    components = {c.id: c for c in create_pipeline(
        config, pipeline_root=str(tmp_path / "pipeline"), data_path=config.data.path,
        schema_path=config.schema_.curated_path, serving_dir=str(tmp_path / "serving"),
        edge_dir=str(tmp_path / "edge")).components}
    examples = _artifact(standard_artifacts.Examples, tmp_path / "unused_examples",
                         split_names=artifact_utils.encode_split_names(["train", "eval"]))
    examples.uri = tiny_model.examples_uri
    model = _artifact(standard_artifacts.Model, tmp_path / "unused_model")
    model.uri = os.path.dirname(tiny_model.saved_model_dir)
    outputs = {"evaluation": _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation"),
               "blessing": _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")}
    _execute(components["Evaluator"], {"examples": examples, "model": model}, outputs, tmp_path)
    return outputs["evaluation"].uri, outputs["blessing"]


@pytest.fixture(scope="module")
def within_bounds(tiny_model, tmp_path_factory, median_score):
    return run_evaluator(tiny_model, tmp_path_factory.mktemp("within"), median_score,
                         {"company": {"demographic_parity_difference": 1.0, "equalized_odds_difference": 1.0}})


def test_a_model_within_the_gaps_is_blessed(within_bounds):
    uri, blessing = within_bounds
    assert blessing.get_int_custom_property("blessed") == 1
    assert os.path.isfile(os.path.join(blessing.uri, "BLESSED"))
    assert not os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    result = tfma.load_validation_result(uri)  # as rewritten by the executor
    assert result.validation_ok and not result.missing_cross_slices


def test_the_gaps_are_computed_for_every_pair_of_groups(within_bounds):
    uri, _ = within_bounds
    loaded = evaluation.load(uri)
    companies = [key for key in loaded.metrics if len(key) == 1 and key[0][0] == "company"]
    pairs = [pair for pair in loaded.cross if pair[0][0][0] == "company"]
    assert len(companies) >= 3 and len(pairs) == len(companies) ** 2
    compared = [pair for pair in pairs if all(loaded.value(key, "example_count") >= 5 for key in pair)]
    assert any(loaded.cross_value(pair, "demographic_parity_difference") > 0 for pair in compared)


def test_a_gap_beyond_its_bound_is_not_blessed(tiny_model, tmp_path, within_bounds, median_score):
    uri, _ = within_bounds
    loaded = evaluation.load(uri)
    largest = max(loaded.cross_value(pair, "demographic_parity_difference") for pair in loaded.cross
                  if pair[0][0][0] == "company")
    assert largest > 0
    refused_uri, blessing = run_evaluator(tiny_model, tmp_path, median_score,
                                          {"company": {"demographic_parity_difference": largest / 2}})
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.path.isfile(os.path.join(blessing.uri, "NOT_BLESSED"))
    failures = evaluation.validation_failures(evaluation.load(refused_uri))
    assert failures and all(f["metric"] == "demographic_parity_difference" and f["value"] > largest / 2
                            for f in failures)

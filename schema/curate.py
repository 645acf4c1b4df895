"""Drafts a curated schema from data: TFDV's inferred schema plus what inference cannot know.

Curation adds: TRAINING/SERVING environments (the label column is not expected at serving),
drift and skew comparators, a minimum example count, and string domains only for
low-cardinality categoricals (a long list such as company names changes too often to be
an error; unseen values go to the out-of-vocabulary bucket instead)."""
import os

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from config import PipelineConfig

TRAINING, SERVING = "TRAINING", "SERVING"
MAX_DOMAIN_SIZE = 20
DRIFT_THRESHOLD = 0.1
MIN_EXAMPLES = 50


def curate(schema: schema_pb2.Schema, config: PipelineConfig) -> schema_pb2.Schema:
    curated = schema_pb2.Schema()
    curated.CopyFrom(schema)
    by_name = {f.name: f for f in curated.feature}
    missing = [name for name in config.feature_names + [config.label.column] if name not in by_name]
    if missing:
        raise ValueError(f"columns {missing} are not in the data; check features and label.column")

    curated.default_environment[:] = [TRAINING, SERVING]
    by_name[config.label.column].not_in_environment.append(SERVING)
    curated.dataset_constraints.min_examples_count = MIN_EXAMPLES

    used = set(config.feature_names) | {config.label.column}
    for schema_feature in curated.feature:
        # A CSV cell holds at most one value, and CsvExampleGen writes a missing one as an empty
        # list: an always-present column must therefore have exactly one value.
        required = schema_feature.presence.min_fraction == 1.0
        schema_feature.value_count.Clear()
        schema_feature.value_count.min = 1 if required and schema_feature.name in used else 0
        schema_feature.value_count.max = 1
        if schema_feature.name not in used:
            # Columns the model does not read may be empty or absent without stopping the run.
            schema_feature.presence.Clear()

    # Features stay sparse (CsvExampleGen writes a missing value as an empty list, which a
    # dense representation rejects); preprocessing fills in the config's missing values.
    curated.ClearField("tensor_representation_group")
    for feature in config.features:
        schema_feature = by_name[feature.name]
        if feature.kind == "categorical_string":
            schema_feature.drift_comparator.infinity_norm.threshold = DRIFT_THRESHOLD
            schema_feature.skew_comparator.infinity_norm.threshold = DRIFT_THRESHOLD
        else:
            schema_feature.drift_comparator.jensen_shannon_divergence.threshold = DRIFT_THRESHOLD
            schema_feature.skew_comparator.jensen_shannon_divergence.threshold = DRIFT_THRESHOLD

    large_domains = {d.name for d in curated.string_domain if len(d.value) > MAX_DOMAIN_SIZE}
    for schema_feature in curated.feature:
        if schema_feature.HasField("domain") and schema_feature.domain in large_domains:
            schema_feature.ClearField("domain")
    kept = [d for d in curated.string_domain if d.name not in large_domains]
    del curated.string_domain[:]
    curated.string_domain.extend(kept)
    return curated


def draft_schema(config: PipelineConfig) -> schema_pb2.Schema:
    pattern = os.path.join(config.data.path, (config.data.span_pattern or "*.csv").replace("{SPAN}", "*"))
    statistics = tfdv.generate_statistics_from_csv(data_location=pattern)
    return curate(tfdv.infer_schema(statistics, infer_feature_shape=False), config)


def write_schema(schema: schema_pb2.Schema, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tfdv.write_schema_text(schema, path)

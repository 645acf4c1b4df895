"""The one typed config of a tfxline pipeline: data, features, label, task, training,
evaluation, outputs and Beam settings. Loaded and validated before any TFX work starts."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Annotated, Dict, List, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.beam import BeamConfig, check_profile

PACKAGE_PREFIX = "package:"
DEFAULT_CONFIG = f"{PACKAGE_PREFIX}config/taxi.yaml"


class ConfigError(ValueError):
    """A config problem, phrased as one line that names the field and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    # A directory of CSV files; "package:<pkg>/<path>" resolves inside an installed package.
    path: str
    # Files under `path` for one span, e.g. "span-{SPAN}/*.csv"; the newest span is read.
    span_pattern: Optional[str] = None
    # Read this span instead of the newest (TFX's RangeConfig static range; TFX 1.16's ExampleGen reads one
    # span per run, so a range of several spans is not offered).
    span: Optional[int] = Field(default=None, ge=0)
    split_buckets: Dict[str, int] = Field(default_factory=lambda: {"train": 4, "eval": 1})

    @field_validator("span_pattern")
    @classmethod
    def _span_has_placeholder(cls, value):
        if value is not None and "{SPAN}" not in value:
            raise ValueError("must contain {SPAN}, e.g. 'span-{SPAN}/*.csv'")
        return value

    @model_validator(mode="after")
    def _span_needs_pattern(self):
        if self.span is not None and self.span_pattern is None:
            raise ValueError("span needs span_pattern (e.g. 'span-{SPAN}/*.csv')")
        return self

    @field_validator("split_buckets")
    @classmethod
    def _train_and_eval(cls, value):
        if set(value) != {"train", "eval"} or min(value.values()) < 1:
            raise ValueError("needs exactly 'train' and 'eval' with positive bucket counts")
        return value


class SchemaConfig(_Strict):
    # curated: ImportSchemaGen of `curated_path`; inferred: SchemaGen from the statistics.
    source: Literal["curated", "inferred"] = "curated"
    curated_path: Optional[str] = None

    @model_validator(mode="after")
    def _curated_needs_path(self):
        if self.source == "curated" and not self.curated_path:
            raise ValueError("source 'curated' needs curated_path (or use source: inferred)")
        return self


class _Feature(_Strict):
    name: str
    # A sensitive feature (e.g. a protected attribute) is named as such in the model card; the review
    # shows it only in aggregates of at least `review.min_count` examples, never per example.
    sensitive: bool = False


class NumericFeature(_Feature):
    kind: Literal["numeric"]
    default: float = 0.0


class BucketizedFeature(_Feature):
    kind: Literal["bucketized"]
    buckets: int = Field(ge=2)
    default: float = 0.0


class CategoricalIntFeature(_Feature):
    kind: Literal["categorical_int"]
    # Values are ids in [0, num_values); others fall into one extra bucket.
    num_values: int = Field(ge=1)
    default: int = 0


class CategoricalStringFeature(_Feature):
    kind: Literal["categorical_string"]
    top_k: int = Field(default=1000, ge=1)
    default: str = ""


Feature = Annotated[
    Union[NumericFeature, BucketizedFeature, CategoricalIntFeature, CategoricalStringFeature],
    Field(discriminator="kind"),
]


class LabelConfig(_Strict):
    """How the label is made from a raw column.

    rule none: the column is the label (regression value, 0/1 for binary, integer class id, or a
    class name listed in `classes`); above: column > threshold; fraction_of_column_above:
    column > threshold * `of_column` (0 where `of_column` is missing)."""

    column: str
    rule: Literal["none", "above", "fraction_of_column_above"] = "none"
    threshold: Optional[float] = None
    of_column: Optional[str] = None
    classes: Optional[List[str]] = None
    name: str = "label"

    @model_validator(mode="after")
    def _rule_arguments(self):
        if self.rule != "none" and self.threshold is None:
            raise ValueError(f"rule '{self.rule}' needs threshold")
        if self.rule == "fraction_of_column_above" and not self.of_column:
            raise ValueError("rule 'fraction_of_column_above' needs of_column")
        return self


class TrainingConfig(_Strict):
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=128, ge=1)
    learning_rate: float = Field(default=0.003, gt=0)
    hidden_units: List[int] = Field(default_factory=lambda: [64, 32])
    embedding_dim: int = Field(default=8, ge=1)
    seed: int = 42


class ChangeThreshold(_Strict):
    # The candidate may be at most this much worse than the last blessed model (absolute).
    max_drop: float = Field(ge=0)


class GapBounds(_Strict):
    """Largest gaps allowed between two groups of one feature (fairlearn's definitions, at the decision
    threshold): the Evaluator does not bless a model beyond them."""
    demographic_parity_difference: Optional[float] = Field(default=None, ge=0, le=1)
    equalized_odds_difference: Optional[float] = Field(default=None, ge=0, le=1)


class FairnessConfig(_Strict):
    # Grouping features: each group's count, selection rate, TPR, FPR and FNR are reported.
    features: List[str] = Field(default_factory=list)
    # A score above it is a positive prediction (also the confusion matrix's threshold).
    decision_threshold: float = Field(default=0.5, gt=0, lt=1)
    # Smaller groups are reported as insufficient data and left out of the gaps and the gate.
    min_group_size: int = Field(default=30, ge=1)
    # Feature -> bounds; features without bounds are reported, not gated.
    max_gaps: Dict[str, GapBounds] = Field(default_factory=dict)


class EvaluationConfig(_Strict):
    # Metric name -> lower bound for blessing (value thresholds; the first run uses these alone).
    thresholds: Dict[str, float]
    # Metric name -> allowed drop against the last blessed model.
    change_thresholds: Dict[str, ChangeThreshold] = Field(default_factory=dict)
    # Each slice is a list of raw feature names; [] is the whole eval split.
    slices: List[List[str]] = Field(default_factory=lambda: [[]])
    # Anomaly kinds (tensorflow_metadata AnomalyInfo.Type names) that do not stop the run.
    allowed_anomalies: List[str] = Field(default_factory=list)
    # Points on the curves of auc and auc_precision_recall. TFMA's default, 10,000, made the
    # Evaluator 1.7 s slower on the taxi data (30 slices) for an AUC 0.0005 higher.
    curve_thresholds: int = Field(default=1000, gt=1)
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)


class OutputConfig(_Strict):
    # Relative paths are relative to the working directory of `tfxline run`.
    root: str = "tfxline_output"
    serving_dir: Optional[str] = None
    edge_dir: Optional[str] = None

    @property
    def serving(self) -> str:
        return self.serving_dir or os.path.join(self.root, "serving")

    @property
    def edge(self) -> str:
        return self.edge_dir or os.path.join(self.root, "edge")


class EdgeConfig(_Strict):
    """TFLite export of every pushed model, refused unless it answers like the SavedModel."""
    enabled: bool = True
    max_score_diff: float = Field(default=1e-4, gt=0)
    max_metric_drop: float = Field(default=0.005, ge=0)
    parity_examples: int = Field(default=2000, ge=10)


class ReviewConfig(_Strict):
    """`tfxline review` and the notebooks: the report, its slices and the model card."""
    # The model card's human parts, reviewed by people (relative to the config file); default
    # <config name>.model_card.yaml beside the config.
    model_card: Optional[str] = None
    # Slices with fewer eval examples are flagged as insufficient data instead of ranked.
    min_slice_size: int = Field(default=50, ge=1)
    # Privacy: no aggregate of fewer examples (no slice, group or value count) is shown.
    min_count: int = Field(default=10, ge=1)
FeatureKind = Literal["numeric", "bucketized", "categorical_int", "categorical_string"]
DriftAction = Literal["warn", "block", "off"]


class DriftActions(_Strict):
    """What the pipeline does when a feature drifted from the last blessed model's training data: warn (the
    run goes on and the summary says so), block (the run stops before training), off (not checked, also
    not by `tfxline monitor`). A feature's entry wins over its kind's, which wins over the default."""
    default: DriftAction = "warn"
    kinds: Dict[FeatureKind, DriftAction] = Field(default_factory=dict)
    features: Dict[str, DriftAction] = Field(default_factory=dict)


class ConceptDriftConfig(_Strict):
    """Live quality in `tfxline monitor`, on the requests whose labels arrived (`tfxline feedback ingest`):
    concept drift when `metric` in the newest window is worse than the version's at training time (its
    Evaluator's, on the eval split) by more than `max_drop`, with the whole 95% interval beyond."""
    # Default: the task's first evaluated metric (auc, sparse_categorical_accuracy, mean_squared_error).
    metric: Optional[Literal["auc", "binary_accuracy", "sparse_categorical_accuracy", "mean_squared_error",
                             "mean_absolute_error"]] = None
    # In the metric's own units: a drop for auc and accuracies, a rise for the errors.
    max_drop: float = Field(default=0.05, ge=0)
    # A window with fewer labels is not judged (the report says so).
    min_labels: int = Field(default=200, ge=2)


class MonitoringConfig(_Strict):
    """Drift and skew checks: the pipeline's drift gate and `tfxline monitor`."""
    # False alarms allowed per comparison (all features together); each feature is tested at
    # min(max_feature_alpha, alpha / number of features), at the sample sizes of the comparison.
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    max_feature_alpha: float = Field(default=0.01, gt=0, lt=0.5)
    drift: DriftActions = Field(default_factory=DriftActions)
    # Distinct values a categorical feature's statistics keep with their counts; a feature with more
    # is compared on hash buckets of its values (the report says so).
    max_values: int = Field(default=10000, ge=10)
    hash_buckets: int = Field(default=1024, ge=16)
    # Points of each numeric feature's distribution kept in the statistics.
    grid_points: int = Field(default=2048, ge=16)
    # The server's --request_log_dir; relative paths are relative to the working directory.
    request_log_dir: Optional[str] = None
    # The newest window and the one before it: the last `window_rows` requests of a model version, or
    # with `window_seconds`, the requests of the last that many seconds.
    window_rows: int = Field(default=10000, ge=1)
    window_seconds: Optional[float] = Field(default=None, gt=0)
    # A comparison with fewer rows on either side is not made (the report says so).
    min_rows: int = Field(default=100, ge=1)
    concept: ConceptDriftConfig = Field(default_factory=ConceptDriftConfig)

    def action(self, feature) -> str:
        """The drift action of a config feature: its own entry, else its kind's, else the default."""
        return self.drift.features.get(feature.name, self.drift.kinds.get(feature.kind, self.drift.default))


KUBEFLOW_TARGETS = ("kubeflow", "vertex")


class BulkInferrerConfig(_Strict):
    """TFX's BulkInferrer after the Evaluator: the blessed model's predictions on one split, as a
    pipeline artifact (InferenceResult)."""
    enabled: bool = False
    split: str = "eval"


class ScoringConfig(_Strict):
    """Batch scoring (`tfxline score`) and stream scoring (`tfxline stream`, `tfxline edge stream`)."""
    # Input columns copied to every output row for the join back; none: the file and row number.
    id_columns: List[str] = Field(default_factory=list)
    batch_size: int = Field(default=1024, ge=1)
    # A job with more rejected rows than this share fails (the rejects are still written).
    max_reject_share: float = Field(default=0.01, ge=0, le=1)
    # Length of the windows of the monitoring statistics a stream emits.
    window_seconds: float = Field(default=60.0, gt=0)


class KubeflowConfig(_Strict):
    """The compiled Kubeflow pipeline (`tfxline compile`, `tfxline submit`): where its pods read and
    write, as the pods see them (object-store URIs), the image they run, and the KFP endpoint."""
    # kubeflow: open-source Kubeflow Pipelines (schema 2.1, no resolver tasks); vertex: Vertex AI Pipelines.
    target: Literal["kubeflow", "vertex"] = "kubeflow"
    # The image every component runs: the Dockerfile here, built and pushed to a registry the cluster pulls from.
    image: Optional[str] = None
    pipeline_root: str = "gs://YOUR_BUCKET/tfxline/pipeline"
    data_path: str = "gs://YOUR_BUCKET/tfxline/data"
    schema_path: Optional[str] = None
    serving_dir: str = "gs://YOUR_BUCKET/tfxline/serving"
    edge_dir: str = "gs://YOUR_BUCKET/tfxline/edge"
    # The Beam profile the pods run their Beam components on.
    beam_profile: str = "multi_process"
    # KFP's API, e.g. http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`.
    endpoint: Optional[str] = None
    experiment: str = "Default"
    # A multi-user deployment's profile namespace; leave out for a standalone deployment.
    namespace: Optional[str] = None
    # The environment variable holding a bearer token for the endpoint (e.g. from `gcloud auth print-access-token`).
    token_env: Optional[str] = None


class MetadataConfig(_Strict):
    # sqlite: <output root>/metadata.sqlite; mysql: a shared MLMD database.
    kind: Literal["sqlite", "mysql"] = "sqlite"
    host: str = "localhost"
    port: int = 3306
    database: str = "mlmd"
    user: str = "root"
    # The password: the contents of password_file if set, else the environment variable password_env.
    password_env: str = "MLMD_MYSQL_PASSWORD"
    password_file: Optional[str] = None


TASK_METRICS = {
    "binary": {"auc", "binary_accuracy", "precision", "recall", "auc_precision_recall"},
    "multiclass": {"sparse_categorical_accuracy"},
    "regression": {"mean_squared_error", "mean_absolute_error"},
}
# Metrics where lower is better; all others are higher-is-better.
LOWER_IS_BETTER = {"mean_squared_error", "mean_absolute_error"}
# TFMA's (Keras') class of each metric.
METRIC_CLASSES = {
    "auc": "AUC",
    "binary_accuracy": "BinaryAccuracy",
    "precision": "Precision",
    "recall": "Recall",
    "auc_precision_recall": "AUCPrecisionRecall",
    "sparse_categorical_accuracy": "SparseCategoricalAccuracy",
    "mean_squared_error": "MeanSquaredError",
    "mean_absolute_error": "MeanAbsoluteError",
}


class PipelineConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    task: Literal["binary", "multiclass", "regression"]
    data: DataConfig
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    features: List[Feature] = Field(min_length=1)
    label: LabelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig
    output: OutputConfig = Field(default_factory=OutputConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    beam: BeamConfig = Field(default_factory=BeamConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    bulk_inferrer: BulkInferrerConfig = Field(default_factory=BulkInferrerConfig)
    metadata: MetadataConfig = Field(default_factory=MetadataConfig)
    kubeflow: KubeflowConfig = Field(default_factory=KubeflowConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    # The local run's speed-ups (config/speedups.py); TFXLINE_SPEEDUPS=0 also turns them off.
    speedups: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self):
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"features: {duplicates} listed more than once")
        if self.label.column in names:
            raise ValueError(f"label.column: '{self.label.column}' is also a feature")
        if self.task == "multiclass" and not self.label.classes:
            raise ValueError("label.classes: task 'multiclass' needs the list of class names")
        if self.task == "binary" and self.label.classes is not None and len(self.label.classes) != 2:
            raise ValueError(f"label.classes: task 'binary' needs 2 classes, got {len(self.label.classes)} "
                             "(or leave them out for a 0/1 column)")
        allowed = TASK_METRICS[self.task]
        for metric in list(self.evaluation.thresholds) + list(self.evaluation.change_thresholds):
            if metric not in allowed:
                raise ValueError(
                    f"evaluation: metric '{metric}' is not one of {sorted(allowed)} for task '{self.task}'")
        if self.bulk_inferrer.split not in self.data.split_buckets:
            raise ValueError(f"bulk_inferrer.split: '{self.bulk_inferrer.split}' is not one of the splits "
                             f"{sorted(self.data.split_buckets)}")
        concept_metric = self.monitoring.concept.metric
        if concept_metric is not None and concept_metric not in allowed:
            raise ValueError(f"monitoring.concept.metric: '{concept_metric}' is not one of {sorted(allowed)} for "
                             f"task '{self.task}'")
        unknown = sorted(set(self.monitoring.drift.features) - set(names))
        if unknown:
            raise ValueError(f"monitoring.drift.features: {unknown} are not features")
        for slice_keys in self.evaluation.slices:
            for key in slice_keys:
                if key not in names:
                    raise ValueError(f"evaluation.slices: '{key}' is not a feature")
        fairness = self.evaluation.fairness
        if fairness.features and self.task != "binary":
            raise ValueError(f"evaluation.fairness: selection rates and TPR/FPR need task 'binary', not '{self.task}'")
        for name in fairness.features:
            if name not in names:
                raise ValueError(f"evaluation.fairness.features: '{name}' is not a feature")
        for name in fairness.max_gaps:
            if name not in fairness.features:
                raise ValueError(f"evaluation.fairness.max_gaps: '{name}' is not one of fairness.features")
        check_profile(self.beam, self.kubeflow.beam_profile, "kubeflow.beam_profile")
        return self

    @property
    def feature_names(self) -> List[str]:
        return [f.name for f in self.features]

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json(by_alias=True).encode()).hexdigest()[:16]

    def model_settings(self) -> "ModelConfig":
        return ModelConfig(task=self.task, features=self.features, label=self.label, training=self.training)

    def to_custom_config(self) -> dict:
        """What Transform and the Trainer are given (their custom_config, part of their cache key):
        the model settings only, no paths, so a Kubeflow spec carries nothing of this machine."""
        return json.loads(self.model_settings().model_dump_json())


class ModelConfig(_Strict):
    """The part of the config that preprocessing and training read (trainer/)."""
    task: Literal["binary", "multiclass", "regression"]
    features: List[Feature]
    label: LabelConfig
    training: TrainingConfig

    @property
    def feature_names(self) -> List[str]:
        return [f.name for f in self.features]


def resolve_path(path: str, relative_to: Optional[Path] = None) -> str:
    """Resolves "package:<pkg>/<rest>" through the installed package, else a plain path."""
    if path.startswith(PACKAGE_PREFIX):
        package, _, rest = path[len(PACKAGE_PREFIX):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"'{path}': package '{package}' is not installed")
        return os.path.join(list(spec.submodule_search_locations)[0], rest)
    if relative_to is not None and not os.path.isabs(path):
        return str((relative_to / path).resolve())
    return os.path.abspath(path)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("function-", "tagged-")))
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_config(raw: dict, source: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_first_error(error)}") from None


def load_config(path: str = DEFAULT_CONFIG, resolve_inputs: bool = True) -> PipelineConfig:
    """Reads, validates and resolves a config file; every problem is one ConfigError line.
    `resolve_inputs=False` leaves the data and schema paths as written, for commands that only
    need the names and outputs (`tfxline release` on a serving host has no training data)."""
    file_path = resolve_path(path)
    try:
        with open(file_path) as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (pass --config PATH)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    config = parse_config(raw, path)
    return _resolve_paths(config, Path(file_path)) if resolve_inputs else config


MODEL_CARD_SUFFIX = ".model_card.yaml"


def _resolve_paths(config: PipelineConfig, config_file: Path) -> PipelineConfig:
    base = config_file.parent
    data_path = resolve_path(config.data.path, base)
    if not os.path.isdir(data_path):
        raise ConfigError(f"data.path: '{data_path}' is not a directory of CSV files")
    schema = config.schema_
    if schema.source == "curated":
        schema_path = resolve_path(schema.curated_path, base)
        if not os.path.isfile(schema_path):
            raise ConfigError(
                f"schema.curated_path: '{schema_path}' not found (write one with 'tfxline schema draft')")
        schema = schema.model_copy(update={"curated_path": schema_path})
    card = config.review.model_card
    card = resolve_path(card, base) if card else str(base / (config_file.stem + MODEL_CARD_SUFFIX))
    return config.model_copy(update={
        "data": config.data.model_copy(update={"path": data_path}),
        "schema_": schema,
        "review": config.review.model_copy(update={"model_card": card}),
    })

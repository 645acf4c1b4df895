"""The tfxline pipeline: one definition for local runs (Beam DirectRunner or another Beam profile)
and Kubeflow runs.

The Evaluator's baseline is the model the serving directory labels `stable` (ServingBaseline), in
local runs and on open-source Kubeflow Pipelines alike; the `vertex` target keeps TFX's
latest-blessed-model resolver, which only Vertex AI Pipelines can run."""
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tensorflow_model_analysis as tfma
# Not `tfx.v1`: it also imports TFX's Google Cloud extensions (Vertex AI and BigQuery clients),
# about 3 s of every run's start-up that a local or Kubeflow run of this pipeline never uses.
from tfx.components import BulkInferrer, ExampleValidator, SchemaGen, StatisticsGen, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration import data_types
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import (bulk_inferrer_pb2, example_gen_pb2, pusher_pb2, range_config_pb2, trainer_pb2,
                       transform_pb2)
from tfx.types import Channel, standard_artifacts

from components.anomaly_gate.component import AnomalyGate
from components.atomic_pusher.component import AtomicPusher
from components.batched_csv_example_gen.component import BatchedCsvExampleGen
from components.data_profiler.component import DataProfiler
from components.drift_baseline.component import DriftBaselinePublisher
from components.drift_gate.component import DriftGate
from components.evaluator import fairness
from components.evaluator.component import Evaluator
from components.serving_baseline.component import ServingBaseline
from components.tflite_export.component import TFLiteExport
from components.trainer.component import Trainer
from config import LOWER_IS_BETTER, PipelineConfig, beam, metrics as metric_names, names

PREPROCESSING_FN = "trainer.preprocessing.preprocessing_fn"
RUN_FN = "trainer.run.run_fn"
RESOLVER_ID = "latest_blessed_model_resolver"
SERVING_BASELINE_ID = "ServingBaseline"
# Where the Evaluator's baseline comes from: the serving directory's stable version, or MLMD.
SERVING_BASELINE, RESOLVER_BASELINE = "serving", "resolver"
EPOCHS_PARAMETER = "train_epochs"
THRESHOLD_PARAMETER = "threshold_{}"

# Transform writes a TF1 graph instead of a TF2 SavedModel of tf.functions: TF2 mode traces the
# preprocessing_fn several more times (21 s vs 12 s on the taxi data) for the same transform_fn.
# The Trainer's TransformFeaturesLayer loads either kind.
TRANSFORM_AS_TF1_GRAPH = True
# What the review draws, computed by TFMA on every slice: ROC and precision-recall curves (points
# per curve), calibration (buckets), the confusion matrix at the decision threshold; for regression
# the mean label and prediction (residuals by slice).
CURVE_PLOT_POINTS = 100
CALIBRATION_BUCKETS = 10
# Per-group rates at the decision threshold: TFMA's own metrics, under the names the review uses.
GROUP_RATE_CLASSES = dict(zip(metric_names.GROUP_RATES, ("PredictedPositiveRate", "Recall", "FallOut", "MissRate")))


def code_version() -> str:
    """Fingerprint of the trainer code; part of Transform's and Trainer's cache key, since
    TFX does not fingerprint code referenced by module path."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for path in sorted([*root.joinpath("trainer").glob("*.py"), root / "config" / "names.py"]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    evaluation = config.evaluation
    metrics = [tfma.MetricConfig(class_name="ExampleCount")]
    for name in metric_names.evaluated_metrics(config):
        lower_is_better = name in LOWER_IS_BETTER
        threshold = tfma.MetricThreshold()
        if name in evaluation.thresholds:
            bound = {"value": evaluation.thresholds[name]}
            threshold.value_threshold.CopyFrom(
                tfma.GenericValueThreshold(upper_bound=bound) if lower_is_better
                else tfma.GenericValueThreshold(lower_bound=bound))
        if name in evaluation.change_thresholds:
            drop = evaluation.change_thresholds[name].max_drop
            threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.LOWER_IS_BETTER if lower_is_better
                else tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": drop if lower_is_better else -drop}))
        metric = tfma.MetricConfig(class_name=metric_names.METRIC_CLASSES[name])
        if name in metric_names.CURVE_METRICS:
            metric.config = json.dumps({"num_thresholds": evaluation.curve_thresholds})
        if threshold.ByteSize():
            # Blessing looks at the whole eval split; slices are reported, not gated (a small
            # slice such as one payment type can have an undefined AUC).
            metric.per_slice_thresholds.append(
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold))
        metrics.append(metric)
    metrics.extend(_review_metrics(config))
    fairness_metrics, cross_slicing_specs = _fairness_metrics(config)
    metrics.extend(fairness_metrics)
    slices = list(evaluation.slices)
    slices.extend([name] for name in evaluation.fairness.features if [name] not in slices)
    return tfma.EvalConfig(
        # An explicit model type: without one, TFMA tries loading each model with
        # tf.keras.models.load_model first (1.5 s per model with tf-keras).
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key=config.label.name,
                                    model_type=tfma.constants.TF_GENERIC,
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec(feature_keys=keys) for keys in slices],
        cross_slicing_specs=cross_slicing_specs,
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


def _metric(class_name: str, module: str = "", **settings) -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name=class_name, module=module, config=json.dumps(settings) if settings else "")


def _review_metrics(config: PipelineConfig) -> List[tfma.MetricConfig]:
    if config.task == "binary":
        return [_metric("ConfusionMatrixAtThresholds", thresholds=[config.evaluation.fairness.decision_threshold]),
                _metric("ConfusionMatrixPlot", num_thresholds=CURVE_PLOT_POINTS),
                _metric("CalibrationPlot", num_buckets=CALIBRATION_BUCKETS)]
    if config.task == "multiclass":
        return [_metric("MultiClassConfusionMatrixPlot")]
    return [_metric("MeanLabel"), _metric("MeanPrediction")]


def group_pair_spec(feature: str) -> tfma.CrossSlicingSpec:
    """Every pair of groups (slices) of one feature."""
    return tfma.CrossSlicingSpec(baseline_spec=tfma.SlicingSpec(feature_keys=[feature]),
                                 slicing_specs=[tfma.SlicingSpec(feature_keys=[feature])])


def _fairness_metrics(config: PipelineConfig):
    """Group rates on every slice and, for each fairness feature, the gaps between its groups; the
    configured bounds on the gaps are cross-slice thresholds, so they gate the blessing."""
    settings = config.evaluation.fairness
    if not settings.features:
        return [], []
    threshold = settings.decision_threshold
    metrics = [_metric(class_name, thresholds=[threshold], name=name)
               for name, class_name in GROUP_RATE_CLASSES.items()]
    for name, class_name in metric_names.GAP_CLASSES.items():
        metric = _metric(class_name, fairness.__name__, decision_threshold=threshold,
                         min_group_size=settings.min_group_size)
        for feature, bounds in settings.max_gaps.items():
            bound = getattr(bounds, name)
            if bound is not None:
                metric.cross_slice_thresholds.append(tfma.CrossSliceMetricThreshold(
                    cross_slicing_specs=[group_pair_spec(feature)],
                    threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                        upper_bound={"value": bound}))))
        metrics.append(metric)
    return metrics, [group_pair_spec(feature) for feature in settings.features]


def run_parameters(config: PipelineConfig) -> Dict[str, Tuple[type, object]]:
    """The pipeline's run-time parameters on Kubeflow, name -> (type, default from the config): the
    Trainer's epochs and every value threshold of the Evaluator."""
    parameters = {EPOCHS_PARAMETER: (int, config.training.epochs)}
    for metric, bound in config.evaluation.thresholds.items():
        parameters[THRESHOLD_PARAMETER.format(metric)] = (float, float(bound))
    return parameters


def create_pipeline(config: PipelineConfig, pipeline_root: str, data_path: str, schema_path: Optional[str],
                    serving_dir: str, edge_dir: str, beam_profile: Optional[str] = None, image: Optional[str] = None,
                    metadata_connection_config=None, baseline: str = SERVING_BASELINE,
                    runtime_parameters: bool = False, stable_when_built: Optional[int] = None) -> Pipeline:
    """The pipeline with its paths as the components see them. `beam_profile`: the Beam profile of
    its Beam components (default: the config's), `image` the image remote Beam workers run.
    `runtime_parameters`: the run parameters (`run_parameters`) as RuntimeParameters with the config's
    values as defaults (Kubeflow), else the values. `stable_when_built`: the serving directory's stable
    version now, for a local run's cache (components/serving_baseline)."""
    values = {}
    for name, (ptype, default) in run_parameters(config).items():
        values[name] = data_types.RuntimeParameter(name=name, ptype=ptype, default=default) \
            if runtime_parameters else default
    pattern = config.data.span_pattern or "*.csv"
    # TFX's driver resolves {SPAN} (the newest span, or the configured one) and records the span on the
    # Examples artifact. Its static range must start and end at the same span.
    span = config.data.span
    range_config = None if span is None else range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span))
    # CsvExampleGen with the same examples and splits, converted a batch of rows at a time.
    example_gen = BatchedCsvExampleGen(
        input_base=data_path,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern=pattern)]),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
            for name, buckets in config.data.split_buckets.items()])),
        range_config=range_config).with_id("CsvExampleGen")
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    if schema_path:
        schema_gen = ImportSchemaGen(schema_file=schema_path)
    else:
        schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"],
                               allowed_anomalies=config.evaluation.allowed_anomalies)
    # What serves now: the Evaluator's baseline model (except on Vertex) and, always, the drift baseline
    # (the profile of that model's training data).
    serving_baseline = ServingBaseline(serving_dir=serving_dir, model_name=config.name,
                                       stable_when_built=stable_when_built).with_id(SERVING_BASELINE_ID)
    # Drift: this span against the training data of the model that serves.
    profiler = DataProfiler(examples=example_gen.outputs["examples"], config=config)
    drift_gate = DriftGate(profile=profiler.outputs["profile"], baseline=serving_baseline.outputs["drift_baseline"],
                           schema=schema_gen.outputs["schema"], config=config)

    # The model settings only (no paths, no runners): what preprocessing and training read.
    custom_config = {"config": config.to_custom_config(), "code_version": code_version()}
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=custom_config,
        splits_config=transform_pb2.SplitsConfig(analyze=["train"]),
        # The Trainer runs the Transform graph on raw examples itself (as serving does): writing
        # transformed copies of both splits took Transform 9 s instead of 5, and no one read the
        # eval copy (the Evaluator applies the exported model's transform_features).
        materialize=False,
        # Pre/post-transform statistics double Transform's time; StatisticsGen already has them.
        disable_statistics=True,
        # Writing the analyzer cache cost 3 s of 12 on the taxi data, and it only pays when a later
        # run re-analyzes some of the same spans: a run analyzes the newest span, and an unchanged
        # input is already a cache hit of the whole component.
        disable_analyzer_cache=True,
        force_tf_compat_v1=TRANSFORM_AS_TF1_GRAPH)
    # Transform needs no output of the gates, only their success.
    transform.add_upstream_node(anomaly_gate)
    transform.add_upstream_node(drift_gate)

    trainer = Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
        custom_config=custom_config,
        epochs=values[EPOCHS_PARAMETER])

    baseline_nodes = [serving_baseline]
    if baseline == RESOLVER_BASELINE:
        baseline_nodes.append(Resolver(
            strategy_class=LatestBlessedModelStrategy,
            model=Channel(type=standard_artifacts.Model),
            model_blessing=Channel(type=standard_artifacts.ModelBlessing),
        ).with_id(RESOLVER_ID))
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_nodes[-1].outputs["model"],
        eval_config=eval_config(config),
        value_thresholds={metric: values[THRESHOLD_PARAMETER.format(metric)]
                          for metric in config.evaluation.thresholds})
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
            base_directory=os.path.join(serving_dir, config.name))),
    ).with_id("Pusher")
    # A new pushed version's training data becomes the drift baseline of the runs it serves in (a re-run
    # that re-pushes the same model publishes nothing). Decided in its executor, not by a tfx.dsl.Cond:
    # TFX 1.16 compiles that Cond for Kubeflow V2 into a trigger condition on an input key the task does
    # not declare (`_Pusher.pushed_model`), which Kubeflow's driver cannot resolve.
    baseline_publisher = DriftBaselinePublisher(profile=profiler.outputs["profile"],
                                                pushed_model=pusher.outputs["pushed_model"])
    components = [example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate, profiler,
                  drift_gate, transform, trainer, *baseline_nodes, evaluator, pusher, baseline_publisher]
    if config.bulk_inferrer.enabled:
        # Predictions of the blessed model for one split, as PredictionLogs in an InferenceResult
        # artifact (nothing is inferred when the model is not blessed).
        components.append(BulkInferrer(
            examples=example_gen.outputs["examples"],
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            data_spec=bulk_inferrer_pb2.DataSpec(example_splits=[config.bulk_inferrer.split]),
            model_spec=bulk_inferrer_pb2.ModelSpec(model_signature_name=["serving_default"])))
    if config.edge.enabled:
        components.append(TFLiteExport(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            examples=example_gen.outputs["examples"],
            pushed_model=pusher.outputs["pushed_model"],
            edge_dir=edge_dir,
            model_name=config.name,
            task=config.task,
            output_key=names.output_key(config),
            label_name=config.label.name,
            max_score_diff=config.edge.max_score_diff,
            max_metric_drop=config.edge.max_metric_drop,
            max_examples=config.edge.parity_examples))
    for component in components:
        if component.id in config.beam.component_args:
            component.with_beam_pipeline_args(config.beam.component_args[component.id])

    return Pipeline(
        pipeline_name=config.name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam.pipeline_args(config, beam_profile, image=image))

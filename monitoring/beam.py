"""The statistics of a request log computed by TFDV on Apache Beam, for logs that outgrow one machine
(`tfxline monitor --beam`, with --beam-arg for the runner: DirectRunner here, Dataflow or Flink elsewhere).

TFDV computes each version's statistics and those of its two newest windows (by time: rows cannot be
counted from the end across workers) as slices, with every categorical value counted exactly (its top-k,
as many as monitoring.max_values) and numeric quantiles from its sketch at a small epsilon. The profiles
read back carry the sketch's rank error, which the KS distance subtracts, so the tests stay valid (a bit
less sensitive than on exact numpy statistics). A feature with more distinct values than max_values is
compared on its top values and one cell holding the rest."""
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from monitoring import statistics
from serving.request_log import TIME_FEATURE, VERSION_FEATURE

# The quantile sketch's rank error; small enough that a window of a million rows is compared on it.
EPSILON = 1e-4
ALL, NEWEST, PREVIOUS = "all", "newest", "previous"


def _first(batch: pa.RecordBatch, name: str, fill: float) -> np.ndarray:
    """The first value of a feature in each row of a record batch (`fill` where there is none)."""
    values = np.full(batch.num_rows, fill)
    index = batch.schema.get_field_index(name)
    if index < 0:
        return values
    column = batch.column(index)
    offsets = np.asarray(column.offsets.to_numpy())
    has_value = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False)) & (np.diff(offsets) > 0)
    flat = np.asarray(column.flatten().to_numpy(), np.float64)
    values[has_value] = flat[offsets[:-1][has_value] - offsets[0]]
    return values


def slicer(end_ms: Optional[float], window_ms: Optional[float]):
    """A TFDV slice function: each version's rows, and its rows in the two newest windows."""
    def slice_function(batch: pa.RecordBatch):
        versions = _first(batch, VERSION_FEATURE, -1)
        times = _first(batch, TIME_FEATURE, np.nan)
        for version in np.unique(versions):
            rows = versions == version
            yield f"{int(version)}/{ALL}", batch.filter(pa.array(rows))
            if window_ms is None:
                continue
            for key, low, high in ((NEWEST, end_ms - window_ms, end_ms),
                                   (PREVIOUS, end_ms - 2 * window_ms, end_ms - window_ms)):
                selected = rows & (times > low) & (times <= high)
                if selected.any():
                    yield f"{int(version)}/{key}", batch.filter(pa.array(selected))

    return slice_function


def _schema(kinds: Dict[str, str]) -> schema_pb2.Schema:
    """Integer categoricals get TFDV's string statistics (value counts) instead of numeric ones."""
    schema = schema_pb2.Schema()
    for name, kind in kinds.items():
        feature = schema.feature.add(name=name)
        if kind == "categorical_int":
            feature.type = schema_pb2.INT
            feature.int_domain.is_categorical = True
    return schema


def _summary(statistic: statistics_pb2.FeatureNameStatistics, kind: str) -> statistics_pb2.FeatureNameStatistics:
    """TFDV's statistic with tfxline's custom stats built from it."""
    result = statistics_pb2.FeatureNameStatistics()
    result.CopyFrom(statistic)
    result.custom_stats.add(name=statistics.KIND, str=kind)
    stats = statistic.num_stats if statistic.HasField("num_stats") else statistic.string_stats
    common = stats.common_stats
    if kind in statistics.NUMERIC_KINDS:
        quantiles = next((h for h in statistic.num_stats.histograms if h.type == statistics_pb2.Histogram.QUANTILES),
                         statistics_pb2.Histogram())
        nan = quantiles.num_nan
        cdf = result.custom_stats.add(name=statistics.CDF).histogram
        cdf.CopyFrom(quantiles)
        cdf.name = statistics.CDF
        result.custom_stats.add(name=statistics.RANK_ERROR, num=EPSILON * common.tot_num_values)
        result.custom_stats.add(name=statistics.MISSING, num=float(common.num_missing + nan))
        return result
    values = result.custom_stats.add(name=statistics.VALUES).rank_histogram
    values.CopyFrom(statistic.string_stats.rank_histogram)
    counted = sum(b.sample_count for b in values.buckets)
    rest = common.tot_num_values - counted
    if rest > 0:
        values.buckets.add(low_rank=len(values.buckets), high_rank=len(values.buckets), label="(other values)",
                           sample_count=float(rest))
    result.custom_stats.add(name=statistics.MISSING, num=float(common.num_missing))
    return result


def profiles(pattern: str, kinds: Dict[str, str], options: statistics.Options,
             window_seconds: Optional[float], end_ms: Optional[float], beam_args: List[str]) \
        -> Dict[str, statistics.Profile]:
    """{"<version>/all" | "<version>/newest" | "<version>/previous": profile} of the TFRecord files matching
    `pattern`, computed on Beam."""
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    window_ms = None if window_seconds is None else window_seconds * 1000
    stats_options = tfdv.StatsOptions(
        schema=_schema(kinds), feature_allowlist=list(kinds) + [VERSION_FEATURE, TIME_FEATURE],
        experimental_slice_functions=[slicer(end_ms, window_ms)],
        num_quantiles_histogram_buckets=options.grid_points, num_rank_histogram_buckets=options.max_values,
        epsilon=EPSILON)
    result = tfdv.generate_statistics_from_tfrecord(pattern, stats_options=stats_options,
                                                    pipeline_options=PipelineOptions(beam_args))
    found = {}
    for dataset in result.datasets:
        if "/" not in dataset.name:
            continue  # TFDV's default slice, all rows together
        converted = statistics_pb2.DatasetFeatureStatistics(name=f"v{dataset.name}", num_examples=dataset.num_examples)
        for statistic in dataset.features:
            name = statistic.path.step[0]
            if name in kinds:
                converted.features.append(_summary(statistic, kinds[name]))
        found[dataset.name] = statistics.Profile.of(converted)
    return found

"""Statistics of a set of examples as a TFDV `DatasetFeatureStatistics`, computed with numpy.

The fields TFDV fills are filled the way TFDV fills them (counts exactly; quantiles, medians and histogram
counts from exact quantiles where TFDV's come from its sketch), so TFDV's own tools read and validate them.
What drift tests need on top is kept in each feature's `custom_stats`, under `tfxline/` names:

- numeric and bucketized features: `tfxline/cdf`, the distribution at up to `grid_points` points (every
  distinct value when there are fewer): bucket k holds the values in (high of k-1, high of k];
- categorical features: `tfxline/values`, every distinct value with its count, or, with more than
  `max_values` distinct values, `tfxline/hashed`, counts of `hash_buckets` buckets of a stable hash of the
  value (nothing is truncated silently);
- `tfxline/missing` (rows without a value, and NaNs) and `tfxline/kind` (the config kind).

`Profile` reads these back from the proto, so a stored profile needs nothing else."""
import dataclasses
import os
import zlib
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from monitoring.table import FLOAT, INT, STRING, Column

CDF, VALUES, HASHED, MISSING, KIND = "tfxline/cdf", "tfxline/values", "tfxline/hashed", "tfxline/missing", \
    "tfxline/kind"
# Absolute count error of the cdf at each point: 0 here; a TFDV sketch (the Beam path) has some.
RANK_ERROR = "tfxline/rank_error"
NUMERIC_KINDS = ("numeric", "bucketized")
# The pipeline's artifact of the statistics of the data it trained on (components/drift_gate), found
# through ML Metadata by `tfxline monitor`; its files are <uri>/Split-<split>/FeatureStats.pb.
PROFILE_ARTIFACT_TYPE = "tfxline.DataProfile"
PROFILE_FILE = "FeatureStats.pb"
# TFDV's StatsOptions defaults.
TOP_VALUES, RANK_BUCKETS, HISTOGRAM_BUCKETS, QUANTILE_BUCKETS = 20, 1000, 10, 10
_TYPES = {INT: statistics_pb2.FeatureNameStatistics.INT, FLOAT: statistics_pb2.FeatureNameStatistics.FLOAT,
          STRING: statistics_pb2.FeatureNameStatistics.STRING}


@dataclasses.dataclass(frozen=True)
class Options:
    max_values: int = 10000
    hash_buckets: int = 1024
    grid_points: int = 2048

    @classmethod
    def of(cls, monitoring) -> "Options":
        return cls(monitoring.max_values, monitoring.hash_buckets, monitoring.grid_points)


def stable_hash(labels: Iterable[str], buckets: int) -> np.ndarray:
    """The hash bucket of each value: the same on every machine and run (CRC-32 of the UTF-8 text)."""
    return np.array([zlib.crc32(str(label).encode()) % buckets for label in labels], np.int64)


# --- TFDV's fields -----------------------------------------------------------------------------------

def _quantiles(sorted_values: np.ndarray, buckets: int) -> np.ndarray:
    ranks = np.ceil(np.linspace(0, 1, buckets + 1) * len(sorted_values)).astype(np.int64) - 1
    return sorted_values[np.clip(ranks, 0, len(sorted_values) - 1)]


def _quantiles_histogram(sorted_values: np.ndarray, buckets: int, equal_counts: bool) -> statistics_pb2.Histogram:
    histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.QUANTILES)
    if not len(sorted_values):
        return histogram
    bounds = _quantiles(sorted_values, buckets)
    cumulative = np.searchsorted(sorted_values, bounds, side="right")
    for index in range(buckets):
        count = len(sorted_values) / buckets if equal_counts else \
            cumulative[index + 1] - (cumulative[index] if index else 0)
        histogram.buckets.add(low_value=float(bounds[index]), high_value=float(bounds[index + 1]),
                              sample_count=float(count))
    return histogram


def _common(column: Column) -> statistics_pb2.CommonStatistics:
    counts = column.row_values()
    common = statistics_pb2.CommonStatistics(num_non_missing=len(counts), num_missing=int(column.null.sum()))
    if len(counts):
        common.min_num_values = int(counts.min())
        common.max_num_values = int(counts.max())
        common.avg_num_values = float(counts.mean())
        common.tot_num_values = int(counts.sum())
        common.num_values_histogram.CopyFrom(_quantiles_histogram(np.sort(counts), QUANTILE_BUCKETS, True))
    return common


def _sorted_values(column: Column) -> Tuple[np.ndarray, int]:
    """The non-NaN values, sorted, and the number of NaNs."""
    values = column.values.astype(np.float64, copy=False)
    nan = np.isnan(values)
    return np.sort(values[~nan] if nan.any() else values), int(nan.sum())


def _numeric(finite: np.ndarray, nan: int, common: statistics_pb2.CommonStatistics) -> statistics_pb2.NumericStatistics:
    result = statistics_pb2.NumericStatistics(common_stats=common)
    if not len(finite):
        if nan:
            result.histograms.add(type=statistics_pb2.Histogram.STANDARD).num_nan = nan
            result.histograms.add(type=statistics_pb2.Histogram.QUANTILES).num_nan = nan
        return result
    result.mean = float(finite.mean())
    result.std_dev = float(finite.std())
    result.num_zeros = int(np.count_nonzero(finite == 0))
    result.min, result.max = float(finite[0]), float(finite[-1])
    result.median = float(_quantiles(finite, 2)[1])
    standard = result.histograms.add(type=statistics_pb2.Histogram.STANDARD, num_nan=nan)
    if finite[0] == finite[-1]:
        standard.buckets.add(low_value=result.min, high_value=result.max, sample_count=float(len(finite)))
    else:
        edges = np.linspace(finite[0], finite[-1], HISTOGRAM_BUCKETS + 1)
        # Buckets are (low, high], the first also holding the minimum, as TFDV's quantile buckets.
        cumulative = np.searchsorted(finite, edges[1:-1], side="right").tolist() + [len(finite)]
        previous = 0
        for index, count in enumerate(cumulative):
            standard.buckets.add(low_value=float(edges[index]), high_value=float(edges[index + 1]),
                                 sample_count=float(count - previous))
            previous = count
    quantiles = result.histograms.add()
    quantiles.CopyFrom(_quantiles_histogram(finite, QUANTILE_BUCKETS, False))
    quantiles.num_nan = nan
    return result


def _ranked(labels: np.ndarray, counts: np.ndarray):
    """Values by count, most frequent first; ties by value, last first (TFDV's order)."""
    order = sorted(range(len(labels)), key=lambda i: (-counts[i], _neg(labels[i])))
    return [(labels[i], int(counts[i])) for i in order]


class _neg(str):
    """A string that sorts in reverse."""

    def __lt__(self, other):
        return str.__gt__(self, other)


def _value_counts(column: Column):
    if column.dtype == STRING:
        counts = np.bincount(column.values, minlength=len(column.labels))
        keep = counts > 0
        return column.labels[keep], counts[keep]
    uniques, counts = np.unique(column.values, return_counts=True)
    labels = Column(column.dtype, uniques, np.arange(len(uniques) + 1), np.zeros(len(uniques), bool)).strings()
    order = np.argsort(labels.astype(str), kind="stable")
    return labels[order], counts[order]


def _string(column: Column, common: statistics_pb2.CommonStatistics) -> statistics_pb2.StringStatistics:
    result = statistics_pb2.StringStatistics(common_stats=common)
    labels, counts = _value_counts(column)
    result.unique = len(labels)
    ranked = _ranked(labels, counts)
    for label, count in ranked[:TOP_VALUES]:
        result.top_values.add(value=label, frequency=float(count))
    for rank, (label, count) in enumerate(ranked[:RANK_BUCKETS]):
        result.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=float(count))
    if len(column.values):
        lengths = np.array([len(label.encode()) for label in labels], np.float64)
        result.avg_length = float((lengths * counts).sum() / counts.sum())
    return result


# --- tfxline's fields ----------------------------------------------------------------------------------

def _grid(sorted_values: np.ndarray, points: int, extra: Optional[np.ndarray]) -> np.ndarray:
    if not len(sorted_values):
        return np.unique(extra) if extra is not None else np.zeros(0)
    uniques = sorted_values[np.r_[True, sorted_values[1:] != sorted_values[:-1]]]
    if len(uniques) <= points:
        edges = uniques
    else:
        edges = np.unique(_quantiles(sorted_values, points - 1))
    if extra is not None and len(extra):
        edges = np.union1d(edges, extra)
    return edges


def _cdf(present: np.ndarray, nan: int, points: int, align: Optional["NumericSummary"]) -> statistics_pb2.Histogram:
    extra = None
    if align is not None and len(align.edges):
        # The reference's points, and the point just below its minimum, so that this distribution is
        # exact where the reference's is and the share below the reference's range is counted.
        extra = np.append(align.edges, np.nextafter(align.edges[0], -np.inf))
    edges = _grid(present, points, extra)
    cumulative = np.searchsorted(present, edges, side="right")
    histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.QUANTILES, name=CDF, num_nan=nan)
    counts = np.diff(cumulative, prepend=0).astype(np.float64)
    lows = np.concatenate([edges[:1], edges[:-1]]).astype(np.float64)
    for low, high, count in zip(lows.tolist(), edges.astype(np.float64).tolist(), counts.tolist()):
        histogram.buckets.add(low_value=low, high_value=high, sample_count=count)
    return histogram


def _categorical(column: Column, options: Options, statistic: statistics_pb2.FeatureNameStatistics) -> None:
    labels, counts = _value_counts(column)
    if len(labels) <= options.max_values:
        ranked = _ranked(labels, counts)
        values = statistic.custom_stats.add(name=VALUES).rank_histogram
        for rank, (label, count) in enumerate(ranked):
            values.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=float(count))
        return
    buckets = np.bincount(stable_hash(labels, options.hash_buckets), weights=counts,
                          minlength=options.hash_buckets)
    hashed = statistic.custom_stats.add(name=HASHED).histogram
    hashed.name = f"{options.hash_buckets} buckets"
    for index in np.flatnonzero(buckets):
        hashed.buckets.add(low_value=float(index), high_value=float(index), sample_count=float(buckets[index]))


def feature_statistics(name: str, column: Column, kind: Optional[str], options: Options,
                       align: Optional["FeatureSummary"] = None) -> statistics_pb2.FeatureNameStatistics:
    """One feature's statistics: TFDV's for its list type, tfxline's for its config kind (None: TFDV's only)."""
    statistic = statistics_pb2.FeatureNameStatistics(type=_TYPES[column.dtype])
    statistic.path.step.append(name)
    common = _common(column)
    finite, nan = (None, 0) if column.dtype == STRING else _sorted_values(column)
    if column.dtype == STRING:
        statistic.string_stats.CopyFrom(_string(column, common))
    else:
        statistic.num_stats.CopyFrom(_numeric(finite, nan, common))
    if kind is None:
        return statistic
    statistic.custom_stats.add(name=KIND, str=kind)
    empty_rows = int(column.null.sum() + np.count_nonzero(column.row_values() == 0))
    statistic.custom_stats.add(name=MISSING, num=float(empty_rows + nan))
    if kind in NUMERIC_KINDS:
        if column.dtype == STRING:
            raise ValueError(f"feature '{name}' is {kind} in the config but has text values "
                             f"(e.g. {column.labels[column.values[0]]!r})")
        statistic.custom_stats.add(name=CDF).histogram.CopyFrom(
            _cdf(finite, nan, options.grid_points, align if isinstance(align, NumericSummary) else None))
    else:
        _categorical(column, options, statistic)
    return statistic


def dataset_statistics(columns: Dict[str, Column], kinds: Dict[str, Optional[str]], options: Options,
                       name: str = "", align: Optional["Profile"] = None) -> statistics_pb2.DatasetFeatureStatistics:
    """Statistics of the features in `kinds` (config kind, or None for TFDV's fields only). With `align`,
    numeric distributions are also counted at the points of that profile's (a reference's)."""
    rows = next(iter(columns.values())).num_rows if columns else 0
    dataset = statistics_pb2.DatasetFeatureStatistics(name=name, num_examples=rows)
    for feature, kind in kinds.items():
        if feature not in columns:
            continue
        reference = align.features.get(feature) if align is not None else None
        dataset.features.append(feature_statistics(feature, columns[feature], kind, options, reference))
    return dataset


def as_list(*datasets: statistics_pb2.DatasetFeatureStatistics) -> statistics_pb2.DatasetFeatureStatisticsList:
    result = statistics_pb2.DatasetFeatureStatisticsList()
    result.datasets.extend(datasets)
    return result


# --- reading tfxline's fields back -------------------------------------------------------------------------

@dataclasses.dataclass
class NumericSummary:
    kind: str
    rows: int            # rows of the data set
    missing: float       # rows without a value, and NaN values
    edges: np.ndarray    # points of the distribution, increasing
    cumulative: np.ndarray  # values <= each point
    mean: float
    std: float
    minimum: float
    maximum: float
    rank_error: float = 0.0  # absolute count error at each point (0: exact)

    @property
    def values(self) -> float:
        return float(self.cumulative[-1]) if len(self.cumulative) else 0.0

    @property
    def units(self) -> float:
        """What the distribution is over: the values, and the missing ones (below every value)."""
        return self.values + self.missing


@dataclasses.dataclass
class CategoricalSummary:
    kind: str
    rows: int
    missing: float
    labels: np.ndarray        # values (exact) or hash bucket ids (hashed)
    counts: np.ndarray
    hash_buckets: Optional[int] = None  # set when `labels` are hash buckets

    @property
    def units(self) -> float:
        return float(self.counts.sum()) + self.missing

    def hashed(self, buckets: int) -> "CategoricalSummary":
        if self.hash_buckets is not None:
            if self.hash_buckets != buckets:
                raise ValueError(f"hashed with {self.hash_buckets} buckets, not {buckets}")
            return self
        ids = stable_hash(self.labels, buckets)
        counts = np.bincount(ids, weights=self.counts, minlength=buckets)
        keep = np.flatnonzero(counts)
        return CategoricalSummary(self.kind, self.rows, self.missing, keep, counts[keep], buckets)


FeatureSummary = "NumericSummary | CategoricalSummary"


def _custom(statistic, name):
    return next((c for c in statistic.custom_stats if c.name == name), None)


def summary_of(statistic: statistics_pb2.FeatureNameStatistics, rows: int):
    kind = _custom(statistic, KIND)
    if kind is None:
        return None
    missing = _custom(statistic, MISSING).num
    if kind.str in NUMERIC_KINDS:
        cdf = _custom(statistic, CDF).histogram
        edges = np.array([b.high_value for b in cdf.buckets], np.float64)
        cumulative = np.cumsum([b.sample_count for b in cdf.buckets]).astype(np.float64)
        error = _custom(statistic, RANK_ERROR)
        num = statistic.num_stats
        return NumericSummary(kind.str, rows, missing, edges, cumulative, num.mean, num.std_dev,
                              num.min if len(edges) else np.nan, num.max if len(edges) else np.nan,
                              error.num if error else 0.0)
    values, hashed = _custom(statistic, VALUES), _custom(statistic, HASHED)
    if hashed is not None:
        buckets = int(hashed.histogram.name.split()[0])
        return CategoricalSummary(kind.str, rows, missing,
                                  np.array([int(b.low_value) for b in hashed.histogram.buckets], np.int64),
                                  np.array([b.sample_count for b in hashed.histogram.buckets]), buckets)
    return CategoricalSummary(kind.str, rows, missing, np.array([b.label for b in values.rank_histogram.buckets],
                                                                object),
                              np.array([b.sample_count for b in values.rank_histogram.buckets], np.float64))


@dataclasses.dataclass
class Profile:
    """A data set's statistics proto and tfxline's per-feature summaries read from it."""
    proto: statistics_pb2.DatasetFeatureStatistics
    features: Dict[str, object]

    @classmethod
    def of(cls, proto: statistics_pb2.DatasetFeatureStatistics) -> "Profile":
        features = {}
        for statistic in proto.features:
            summary = summary_of(statistic, proto.num_examples)
            if summary is not None:
                features[statistic.path.step[0] if statistic.path.step else statistic.name] = summary
        return cls(proto, features)

    @property
    def num_rows(self) -> int:
        return int(self.proto.num_examples)

    @property
    def name(self) -> str:
        return self.proto.name


def write_profile(directory: str, split: str, profile: Profile) -> str:
    """A profile as TFDV writes statistics: <directory>/Split-<split>/FeatureStats.pb."""
    path = os.path.join(directory, f"Split-{split}", PROFILE_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(as_list(profile.proto).SerializeToString())
    return path


def read_profile(path: str) -> Profile:
    """The first data set of a DatasetFeatureStatisticsList file (a profile, or TFDV statistics)."""
    with open(path, "rb") as handle:
        statistics = statistics_pb2.DatasetFeatureStatisticsList.FromString(handle.read())
    if not statistics.datasets:
        raise ValueError(f"{path}: no data set in the statistics")
    return Profile.of(statistics.datasets[0])


def profile(columns: Dict[str, Column], kinds: Dict[str, Optional[str]], options: Options, name: str = "",
            align: Optional[Profile] = None) -> Profile:
    return Profile.of(dataset_statistics(columns, kinds, options, name, align))

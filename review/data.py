"""The data of a run from TFDV's protos (tensorflow_metadata, no Facets): statistics per split, the
schema the run used, anomalies per split, and drift and skew verdicts where a check measured them.

Privacy: aggregates only, none over fewer than `min_count` examples. Numeric features show no
minimum or maximum (each is one example's value) and their deciles only with at least ten times
`min_count` values; categorical values, schema domain values and values quoted in anomaly
descriptions are shown only when every split has at least `min_count` examples with them."""
import os
import re
from typing import Dict, Iterable, List, Optional, Set

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

STATISTICS_FILE = "FeatureStats.pb"
SCHEMA_FILE = "schema.pbtxt"
ANOMALIES_FILE = "SchemaDiff.pb"
TOP_VALUES = 10
FEATURE_TYPES = {v: k for k, v in statistics_pb2.FeatureNameStatistics.Type.items()}


def split_statistics(statistics_uri: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """As tfdv.load_stats_binary reads StatisticsGen's output."""
    with open(os.path.join(statistics_uri, f"Split-{split}", STATISTICS_FILE), "rb") as handle:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(handle.read())


def load_schema(schema_uri: str) -> schema_pb2.Schema:
    with open(os.path.join(schema_uri, SCHEMA_FILE)) as handle:
        return text_format.Parse(handle.read(), schema_pb2.Schema())


def split_anomalies(anomalies_uri: str, split: str) -> anomalies_pb2.Anomalies:
    with open(os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE), "rb") as handle:
        return anomalies_pb2.Anomalies.FromString(handle.read())


def _name(feature) -> str:
    return ".".join(feature.path.step) or feature.name


def value_counts(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> Dict[str, Dict[str, float]]:
    """feature -> categorical value -> example count (TFDV's rank histogram, up to 1,000 values)."""
    counts: Dict[str, Dict[str, float]] = {}
    for feature in statistics.datasets[0].features:
        if feature.WhichOneof("stats") != "string_stats":
            continue
        stats = feature.string_stats
        found = {bucket.label: bucket.sample_count for bucket in stats.rank_histogram.buckets}
        found.update({top.value: top.frequency for top in stats.top_values if top.value not in found})
        counts[_name(feature)] = found
    return counts


class ValueFilter:
    """Which categorical values may be shown: those with at least `min_count` examples in every split."""

    def __init__(self, per_split: Dict[str, Dict[str, Dict[str, float]]], min_count: int):
        self.min_count = min_count
        features = set().union(*(set(counts) for counts in per_split.values())) if per_split else set()
        self.shown: Dict[str, Set[str]] = {}
        self.rare: Set[str] = set()
        for feature in features:
            values = set().union(*(set(counts.get(feature, {})) for counts in per_split.values()))
            shown = {value for value in values
                     if all(counts.get(feature, {}).get(value, 0) >= min_count for counts in per_split.values())}
            self.shown[feature] = shown
            self.rare |= values - shown

    def allows(self, feature: str, value: str) -> bool:
        return value in self.shown.get(feature, set())

    def redact(self, text: str) -> str:
        """`text` with every rare value replaced (TFDV quotes unexpected values in its descriptions)."""
        for value in sorted((v for v in self.rare if v), key=len, reverse=True):
            text = re.sub(rf"(?<![\w]){re.escape(value)}(?![\w])", f"<value with fewer than {self.min_count} examples>",
                          text)
        return text


def _numeric(stats, min_count: int) -> dict:
    common = stats.common_stats
    result = {"mean": stats.mean, "std_dev": stats.std_dev, "zeros": stats.num_zeros}
    quantiles = next((h for h in stats.histograms if h.type == statistics_pb2.Histogram.QUANTILES), None)
    if quantiles is not None and len(quantiles.buckets) >= 2 and common.num_non_missing >= 10 * min_count:
        # Interior bucket edges only: the outer ones are the minimum and the maximum.
        result["deciles"] = [bucket.high_value for bucket in quantiles.buckets[:-1]]
    return result


def _categorical(feature_name: str, stats, values: ValueFilter, counts: Dict[str, float]) -> dict:
    top = [{"value": t.value, "count": t.frequency} for t in stats.top_values if values.allows(feature_name, t.value)]
    return {"unique": stats.unique, "avg_length": stats.avg_length, "top_values": top[:TOP_VALUES],
            "values_not_shown": sum(1 for value in counts if not values.allows(feature_name, value))}


def statistics_table(per_split: Dict[str, statistics_pb2.DatasetFeatureStatisticsList], values: ValueFilter,
                     min_count: int, sensitive: Iterable[str] = ()) -> dict:
    """split -> {num_examples, features: [...]}, features in name order."""
    sensitive = set(sensitive)
    tables = {}
    for split, statistics in per_split.items():
        dataset = statistics.datasets[0]
        counts = value_counts(statistics)
        features = []
        for feature in sorted(dataset.features, key=_name):
            name = _name(feature)
            kind = feature.WhichOneof("stats")
            stats = getattr(feature, kind) if kind else None
            common = stats.common_stats if kind in ("num_stats", "string_stats") else None
            row = {"feature": name, "type": FEATURE_TYPES.get(feature.type, str(feature.type)),
                   "sensitive": name in sensitive,
                   "present": common.num_non_missing if common else None,
                   "missing": common.num_missing if common else None}
            if dataset.num_examples >= min_count:
                if kind == "num_stats":
                    row["numeric"] = _numeric(stats, min_count)
                elif kind == "string_stats":
                    row["categorical"] = _categorical(name, stats, values, counts.get(name, {}))
            features.append(row)
        tables[split] = {"num_examples": dataset.num_examples, "features": features}
    return tables


def _domain(feature, schema: schema_pb2.Schema, values: ValueFilter) -> Optional[dict]:
    kind = feature.WhichOneof("domain_info")
    if kind is None:
        return None
    if kind in ("string_domain", "domain"):
        domain = feature.string_domain if kind == "string_domain" else next(
            (d for d in schema.string_domain if d.name == feature.domain), None)
        if domain is None:
            return {"kind": "string", "values": [], "values_not_shown": 0}
        shown = [v for v in domain.value if values.allows(feature.name, v)]
        return {"kind": "string", "values": shown, "values_not_shown": len(domain.value) - len(shown)}
    if kind == "int_domain":
        domain = feature.int_domain
        return {"kind": "int", "min": domain.min if domain.HasField("min") else None,
                "max": domain.max if domain.HasField("max") else None, "categorical": domain.is_categorical}
    if kind == "float_domain":
        domain = feature.float_domain
        return {"kind": "float", "min": domain.min if domain.HasField("min") else None,
                "max": domain.max if domain.HasField("max") else None}
    return {"kind": kind}


def _comparator(comparator) -> Optional[dict]:
    found = {}
    if comparator.HasField("infinity_norm"):
        found["infinity_norm"] = comparator.infinity_norm.threshold
    if comparator.HasField("jensen_shannon_divergence"):
        found["jensen_shannon_divergence"] = comparator.jensen_shannon_divergence.threshold
    if comparator.HasField("normalized_abs_difference"):
        found["normalized_abs_difference"] = comparator.normalized_abs_difference.threshold
    return found or None


def schema_table(schema: schema_pb2.Schema, values: ValueFilter, sensitive: Iterable[str] = ()) -> dict:
    """The schema the run validated against, as TFDV's display_schema tabulates it, plus presence,
    environments and the drift and skew comparators."""
    sensitive = set(sensitive)
    features = []
    for feature in schema.feature:
        presence = feature.presence
        features.append({
            "feature": feature.name,
            "type": schema_pb2.FeatureType.Name(feature.type),
            "sensitive": feature.name in sensitive,
            "min_fraction": presence.min_fraction if presence.HasField("min_fraction") else None,
            "min_count": presence.min_count if presence.HasField("min_count") else None,
            "valency": ([feature.value_count.min, feature.value_count.max]
                        if feature.HasField("value_count") else None),
            "domain": _domain(feature, schema, values),
            "not_in_environment": list(feature.not_in_environment),
            "in_environment": list(feature.in_environment),
            "drift": _comparator(feature.drift_comparator) if feature.HasField("drift_comparator") else None,
            "skew": _comparator(feature.skew_comparator) if feature.HasField("skew_comparator") else None,
        })
    constraints = schema.dataset_constraints
    return {"features": features, "default_environment": list(schema.default_environment),
            "min_examples": constraints.min_examples_count if constraints.HasField("min_examples_count") else None}


def drift_verdicts(anomalies: List[anomalies_pb2.Anomalies]) -> dict:
    """Drift and skew measured by any validation in the run (TFDV's `drift_skew_info`); `checked`
    False when none measured anything."""
    measured = []
    for item in anomalies:
        for info in item.drift_skew_info:
            feature = ".".join(info.path.step)
            for kind, measurements in (("drift", info.drift_measurements), ("skew", info.skew_measurements)):
                for m in measurements:
                    measured.append({"feature": feature, "check": kind,
                                     "measure": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                                     "value": m.value, "threshold": m.threshold, "exceeded": m.value > m.threshold})
    return {"checked": bool(measured), "measurements": measured,
            "exceeded": sorted({m["feature"] for m in measured if m["exceeded"]})}


def anomaly_findings(per_split: Dict[str, anomalies_pb2.Anomalies], allowed: Iterable[str],
                     values: ValueFilter) -> List[dict]:
    """[split, feature, kind, description, allowed] as the AnomalyGate reports them, with rare
    values in the descriptions redacted."""
    allowed = set(allowed)
    findings = []
    for split, anomalies in per_split.items():
        infos = list(anomalies.anomaly_info.items())
        if anomalies.HasField("dataset_anomaly_info"):
            infos.append(("(dataset)", anomalies.dataset_anomaly_info))
        for feature, info in sorted(infos, key=lambda item: item[0]):
            for reason in info.reason:
                kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
                findings.append({"split": split, "feature": feature, "kind": kind,
                                 "description": values.redact(reason.description or reason.short_description),
                                 "allowed": kind in allowed})
    return findings

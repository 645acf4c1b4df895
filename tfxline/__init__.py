"""The artifact types of tfxline's own components.

In a Kubeflow pod, TFX's entrypoint finds a custom artifact type by its type name: the spec's
schema title, which TFX requires to be `<namespace>.<Type>` with one dot, is imported as a class
path. So the types live in this top-level package named after their namespace, and
`tfxline.AnomalyReport` imports as written."""
from tfx import types


def set_custom_properties(artifact: types.Artifact, properties: dict) -> None:
    """Integers as int custom properties, everything else as strings."""
    for name, value in properties.items():
        if isinstance(value, int):
            artifact.set_int_custom_property(name, value)
        else:
            artifact.set_string_custom_property(name, str(value))


class AnomalyReport(types.Artifact):
    """The AnomalyGate's verdict: anomaly_report.json plus `passed` and `anomalies` properties."""
    TYPE_NAME = "tfxline.AnomalyReport"


class DataProfile(types.Artifact):
    """Split-<split>/FeatureStats.pb: a DatasetFeatureStatisticsList TFDV reads, with tfxline's custom stats."""
    TYPE_NAME = "tfxline.DataProfile"


class DriftBaseline(types.Artifact):
    """The DataProfile of a pushed model's training data; `span`, `pushed_version` and `serving_version`
    (0: no baseline) properties."""
    TYPE_NAME = "tfxline.DriftBaseline"


class DriftReport(types.Artifact):
    """drift_report.json, with `has_baseline`, `drifted` and `blocked` properties."""
    TYPE_NAME = "tfxline.DriftReport"


class EdgeModel(types.Artifact):
    """manifest.json of a published edge model; `exported`, `edge_version`, `edge_path` properties."""
    TYPE_NAME = "tfxline.EdgeModel"

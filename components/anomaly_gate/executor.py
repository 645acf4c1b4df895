"""Stops the pipeline when ExampleValidator found anomalies that the config does not allow.

ExampleValidator only records anomalies; TFX runs Transform and Trainer regardless. This
executor reads each split's SchemaDiff.pb and raises with a readable report instead."""
import dataclasses
import json
import os
from typing import Any, Dict, Iterable, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

ANOMALIES_KEY = "anomalies"
REPORT_KEY = "report"
ALLOWED_ANOMALIES_KEY = "allowed_anomalies"
REPORT_FILE = "anomaly_report.json"
DATASET = "(dataset)"


class DataAnomaliesError(RuntimeError):
    """The data broke the schema; the message is the readable report."""


@dataclasses.dataclass(frozen=True)
class Finding:
    split: str
    feature: str
    kind: str
    description: str
    allowed: bool


def _kind_name(kind: int) -> str:
    return anomalies_pb2.AnomalyInfo.Type.Name(kind)


def findings_from(split: str, anomalies: anomalies_pb2.Anomalies, allowed: Iterable[str]) -> List[Finding]:
    allowed = set(allowed)
    infos = list(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append((DATASET, anomalies.dataset_anomaly_info))
    found = []
    for feature, info in sorted(infos, key=lambda item: item[0]):
        for reason in info.reason:
            kind = _kind_name(reason.type)
            found.append(Finding(split, feature, kind, reason.description or reason.short_description,
                                 kind in allowed))
    return found


def read_split_anomalies(uri: str, split: str) -> anomalies_pb2.Anomalies:
    path = os.path.join(uri, f"Split-{split}", "SchemaDiff.pb")
    return anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))


def format_report(findings: List[Finding]) -> str:
    blocking = [f for f in findings if not f.allowed]
    lines = [f"The data does not match the schema: {len(blocking)} anomal{'y' if len(blocking) == 1 else 'ies'} "
             f"stopped the pipeline before Transform and Trainer (nothing was trained or pushed)."]
    for f in blocking:
        lines.append(f"  [{f.split}] {f.feature}: {f.kind}: {f.description}")
    lines.append("Fix the data, or update the curated schema if the change is expected "
                 "('tfxline schema draft'), or allow the kind under evaluation.allowed_anomalies.")
    return "\n".join(lines)


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        anomalies = artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY])
        allowed = json.loads(exec_properties.get(ALLOWED_ANOMALIES_KEY) or "[]")
        findings = []
        for split in artifact_utils.decode_split_names(anomalies.split_names):
            findings.extend(findings_from(split, read_split_anomalies(anomalies.uri, split), allowed))

        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        blocking = [f for f in findings if not f.allowed]
        io_utils.write_string_file(
            os.path.join(report.uri, REPORT_FILE),
            json.dumps({"passed": not blocking, "findings": [dataclasses.asdict(f) for f in findings]}, indent=2))
        report.set_int_custom_property("passed", int(not blocking))
        report.set_int_custom_property("anomalies", len(findings))
        if blocking:
            raise DataAnomaliesError(format_report(findings))

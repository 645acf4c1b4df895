"""Stops the run before training when the new span drifted from the data of the model being served, on a
feature whose drift action is `block`; with `warn` the run goes on and the summary says so.

The comparison is monitoring/compare.py's calibrated test (train split against the baseline's train
split), beside TFDV's own comparators from the schema (`drift_comparator`, run by tfdv.validate_statistics
on the same statistics), which are reported but decide nothing: their fixed thresholds do not scale with the
number of rows, and TFDV's L-infinity is 0 on numeric features. The first run has no baseline: the report
says so and the run goes on."""
import json
import os
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.serving_baseline.executor import is_empty
from config import MonitoringConfig
from monitoring import compare, statistics
from monitoring.report import feature_json

PROFILE_KEY = "profile"
BASELINE_KEY = "baseline"
SCHEMA_KEY = "schema"
REPORT_KEY = "report"
FEATURES_KEY = "features"
MONITORING_KEY = "monitoring"
REPORT_FILE = "drift_report.json"
SPLIT = "train"
COMPARISON = "drift vs the served model's training data"


class DriftBlockedError(RuntimeError):
    """A feature with drift action `block` drifted; the message is the readable report."""


def _profile(artifact: types.Artifact) -> statistics.Profile:
    return statistics.read_profile(os.path.join(artifact.uri, f"Split-{SPLIT}", statistics.PROFILE_FILE))


def tfdv_measurements(schema_path: str, baseline: statistics.Profile, current: statistics.Profile) -> Dict[str, list]:
    """TFDV's drift measurements with the schema's comparators: {feature: [{type, value, threshold}]}."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    anomalies = tfdv.validate_statistics(statistics.as_list(current.proto), tfdv.load_schema_text(schema_path),
                                         previous_statistics=statistics.as_list(baseline.proto))
    found = {}
    for info in anomalies.drift_skew_info:
        found[".".join(info.path.step)] = [
            {"type": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type), "value": m.value,
             "threshold": m.threshold} for m in info.drift_measurements]
    return found


def format_report(findings: List[dict], baseline_span: Optional[int], span: int) -> str:
    blocking = [f for f in findings if f["action"] == "block"]
    lines = [f"Span {span} drifted from span {baseline_span} (the data of the model being served): "
             f"{len(blocking)} feature(s) with drift action 'block' stopped the pipeline before Transform and "
             f"Trainer (nothing was trained or pushed)."]
    for f in findings:
        lines.append(f"  {f['feature']} ({f['action']}): {f['test']} {f['score']:.4g} > threshold {f['threshold']:.4g} "
                     f"({f['ratio']:.1f}x), p {f['p_value']:.2g}")
    lines.append("If the change is expected, set monitoring.drift for these features to 'warn' (or 'off') and run "
                 "again; the next pushed model becomes the new baseline.")
    return "\n".join(lines)


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        current_artifact = artifact_utils.get_single_instance(input_dict[PROFILE_KEY])
        baselines = [b for b in input_dict.get(BASELINE_KEY) or [] if not is_empty(b)]
        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        monitoring = MonitoringConfig.model_validate_json(exec_properties[MONITORING_KEY])
        actions = {f["name"]: f["action"] for f in json.loads(exec_properties[FEATURES_KEY])}
        span = current_artifact.get_int_custom_property("span")
        result = {"span": span, "baseline": None, "findings": [], "blocked": False}
        if baselines:
            baseline_artifact = baselines[-1]
            baseline, current = _profile(baseline_artifact), _profile(current_artifact)
            checked = [name for name, action in actions.items() if action != "off"]
            comparison = compare.compare(COMPARISON, baseline, current, checked, monitoring.alpha,
                                         monitoring.max_feature_alpha)
            schema_path = os.path.join(artifact_utils.get_single_uri(input_dict[SCHEMA_KEY]), "schema.pbtxt")
            result["baseline"] = {"span": baseline_artifact.get_int_custom_property("span"),
                                  "rows": baseline.num_rows, "uri": baseline_artifact.uri}
            result["rows"] = current.num_rows
            result["feature_alpha"] = comparison.feature_alpha
            result["features"] = [feature_json(f) for f in comparison.features]
            result["tfdv"] = tfdv_measurements(schema_path, baseline, current)
            result["findings"] = [{**feature_json(f), "action": actions[f.feature]} for f in comparison.drifted]
            result["blocked"] = any(f["action"] == "block" for f in result["findings"])
        io_utils.write_string_file(os.path.join(report.uri, REPORT_FILE), json.dumps(result, indent=2))
        report.set_int_custom_property("has_baseline", int(bool(baselines)))
        report.set_int_custom_property("drifted", len(result["findings"]))
        report.set_int_custom_property("blocked", int(result["blocked"]))
        if result["blocked"]:
            raise DriftBlockedError(format_report(result["findings"], result["baseline"]["span"], span))

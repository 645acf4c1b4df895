"""The gate that turns ExampleValidator's anomalies into a stopped run."""
import json

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.anomaly_gate import executor
from components.anomaly_gate.component import AnomalyGate, AnomalyReport

_TYPE = anomalies_pb2.AnomalyInfo.Type


def _anomalies(**features):
    anomalies = anomalies_pb2.Anomalies()
    for feature, kinds in features.items():
        info = anomalies.anomaly_info[feature]
        for kind in kinds:
            info.reason.add(type=_TYPE.Value(kind), description=f"{feature} is off ({kind})")
    return anomalies


def _write_split(uri, split, anomalies):
    path = uri / f"Split-{split}"
    path.mkdir(parents=True)
    (path / "SchemaDiff.pb").write_bytes(anomalies.SerializeToString())


def _run(tmp_path, allowed, **per_split):
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    anomalies.split_names = artifact_utils.encode_split_names(list(per_split))
    for split, value in per_split.items():
        _write_split(tmp_path / "anomalies", split, value)
    report = AnomalyReport()
    report.uri = str(tmp_path / "report")
    (tmp_path / "report").mkdir()
    try:
        executor.Executor().Do({"anomalies": [anomalies]}, {"report": [report]},
                               {"allowed_anomalies": json.dumps(allowed)})
        return report, None
    except executor.DataAnomaliesError as error:
        return report, error


def test_clean_data_passes(tmp_path):
    report, error = _run(tmp_path, [], train=anomalies_pb2.Anomalies(), eval=anomalies_pb2.Anomalies())
    assert error is None
    assert report.get_int_custom_property("passed") == 1
    assert json.loads((tmp_path / "report" / executor.REPORT_FILE).read_text()) == {"passed": True, "findings": []}


def test_anomalies_stop_the_run_with_a_readable_report(tmp_path):
    report, error = _run(
        tmp_path, [],
        train=_anomalies(payment_type=["ENUM_TYPE_UNEXPECTED_STRING_VALUES"]),
        eval=_anomalies(tips=["FEATURE_TYPE_LOW_FRACTION_PRESENT"]))
    assert error is not None
    message = str(error)
    assert "2 anomalies stopped the pipeline before Transform and Trainer" in message
    assert "[train] payment_type: ENUM_TYPE_UNEXPECTED_STRING_VALUES: payment_type is off" in message
    assert "[eval] tips: FEATURE_TYPE_LOW_FRACTION_PRESENT" in message
    assert report.get_int_custom_property("passed") == 0
    assert report.get_int_custom_property("anomalies") == 2


def test_allowed_kinds_pass_and_are_recorded(tmp_path):
    report, error = _run(tmp_path, ["SCHEMA_NEW_COLUMN"], train=_anomalies(extra=["SCHEMA_NEW_COLUMN"]))
    assert error is None
    findings = json.loads((tmp_path / "report" / executor.REPORT_FILE).read_text())["findings"]
    assert findings == [{"split": "train", "feature": "extra", "kind": "SCHEMA_NEW_COLUMN",
                         "description": "extra is off (SCHEMA_NEW_COLUMN)", "allowed": True}]


def test_dataset_level_anomalies_are_reported(tmp_path):
    anomalies = anomalies_pb2.Anomalies()
    anomalies.dataset_anomaly_info.reason.add(type=_TYPE.DATASET_LOW_NUM_EXAMPLES, description="too few")
    _, error = _run(tmp_path, [], train=anomalies)
    assert error is not None and "(dataset): DATASET_LOW_NUM_EXAMPLES: too few" in str(error)


def test_component_passes_the_allowlist_as_a_parameter():
    from tfx import types

    gate = AnomalyGate(anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
                       allowed_anomalies=["SCHEMA_NEW_COLUMN", "FEATURE_TYPE_LOW_FRACTION_PRESENT"])
    assert json.loads(gate.exec_properties["allowed_anomalies"]) == [
        "FEATURE_TYPE_LOW_FRACTION_PRESENT", "SCHEMA_NEW_COLUMN"]

"""The DriftGate's executor on real profiles (DataProfiler's executor on real Examples): no baseline, drift
that warns, drift that blocks, a feature switched off; and the baseline publisher's copy."""
import json
import random

import pytest
from tfx.types import artifact_utils, standard_artifacts

from components.data_profiler import executor as profiler
from components.drift_baseline import executor as publisher
from components.drift_gate import executor as gate
from config import load_config
from monitoring import tfrecord
from tests.conftest import write_config
from tfxline import DataProfile, DriftBaseline, DriftReport

ROWS = 1500


def _examples(tmp_path, name, rows, header, kinds, scale_miles=1.0):
    """An Examples artifact as ExampleGen writes one (GZIP TFRecords per split), with span 3."""
    import gzip

    import tensorflow as tf

    artifact = standard_artifacts.Examples()
    artifact.uri = str(tmp_path / name)
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    artifact.set_int_custom_property("span", 3)
    for split, part in (("train", rows[:ROWS]), ("eval", rows[ROWS:ROWS + 300])):
        records = []
        for row in part:
            example = tf.train.Example()
            for column, cell in zip(header, row):
                if column not in kinds or cell == "":
                    continue
                feature = example.features.feature[column]
                if kinds[column] == "categorical_string":
                    feature.bytes_list.value.append(cell.encode())
                elif kinds[column] == "categorical_int":
                    feature.int64_list.value.append(int(cell))
                else:
                    feature.float_list.value.append(float(cell) * (scale_miles if column == "trip_miles" else 1))
            records.append(example.SerializeToString())
        path = tmp_path / name / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz"
        path.parent.mkdir(parents=True)
        plain = tmp_path / f"{name}-{split}.tfrecord"
        tfrecord.write_records(str(plain), records)
        path.write_bytes(gzip.compress(plain.read_bytes()))
    return artifact


def _profile(tmp_path, name, examples, config):
    artifact = DataProfile()
    artifact.uri = str(tmp_path / f"{name}-profile")
    features = json.dumps([{"name": f.name, "kind": f.kind} for f in config.features])
    profiler.Executor().Do({"examples": [examples]}, {"profile": [artifact]},
                           {"features": features, "monitoring": config.monitoring.model_dump_json()})
    return artifact


def _gate(tmp_path, config, profile, baseline):
    report = DriftReport()
    report.uri = str(tmp_path / f"report-{len(list(tmp_path.iterdir()))}")
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    (tmp_path / "schema").mkdir(exist_ok=True)
    (tmp_path / "schema" / "schema.pbtxt").write_text(open(config.schema_.curated_path).read())
    features = json.dumps([{"name": f.name, "action": config.monitoring.action(f)} for f in config.features])
    try:
        gate.Executor().Do({"profile": [profile], "baseline": [baseline] if baseline else [], "schema": [schema]},
                           {"report": [report]}, {"features": features,
                                                  "monitoring": config.monitoring.model_dump_json()})
        error = None
    except gate.DriftBlockedError as raised:
        error = raised
    with open(f"{report.uri}/{gate.REPORT_FILE}") as handle:
        return report, json.load(handle), error


@pytest.fixture(scope="module")
def data(tmp_path_factory, taxi_rows):
    root = tmp_path_factory.mktemp("drift_gate")
    header, rows = taxi_rows
    rows = random.Random(2).sample(rows, 2 * (ROWS + 300))
    config = load_config(str(write_config(root / "config")))
    kinds = {f.name: f.kind for f in config.features}
    old = _examples(root, "old", rows[:ROWS + 300], header, kinds)
    same = _examples(root, "same", rows[ROWS + 300:], header, kinds)
    shifted = _examples(root, "shifted", rows[ROWS + 300:], header, kinds, scale_miles=40)
    old_profile = _profile(root, "old", old, config)
    baseline = DriftBaseline()
    baseline.uri = str(root / "baseline")
    pushed = standard_artifacts.PushedModel()
    pushed.set_string_custom_property("pushed_version", "17")
    pushed.set_string_custom_property("pushed_destination", str(root / "serving" / "taxi" / "17"))
    pushed.set_int_custom_property("new_version", 1)
    publisher.Executor().Do({"profile": [old_profile], "pushed_model": [pushed]}, {"baseline": [baseline]}, {})
    return root, config, baseline, _profile(root, "same", same, config), _profile(root, "shifted", shifted, config)


def test_profiles_record_span_rows_and_every_split(data):
    root, config, baseline, same, _ = data
    assert same.get_int_custom_property("span") == 3
    assert json.loads(same.get_string_custom_property("rows")) == {"train": ROWS, "eval": 300}
    assert baseline.get_int_custom_property("span") == 3
    assert baseline.get_string_custom_property("pushed_version") == "17"
    assert (root / "baseline" / "Split-train" / "FeatureStats.pb").read_bytes() == \
        (root / "old-profile" / "Split-train" / "FeatureStats.pb").read_bytes()


def test_no_baseline_passes_and_says_so(data, tmp_path):
    _, config, _, same, _ = data
    report, result, error = _gate(tmp_path, config, same, None)
    assert error is None and result["baseline"] is None and report.get_int_custom_property("has_baseline") == 0


def test_same_distribution_passes(data, tmp_path):
    _, config, baseline, same, _ = data
    report, result, error = _gate(tmp_path, config, same, baseline)
    assert error is None and result["findings"] == [] and len(result["features"]) == len(config.features)
    assert set(result["tfdv"]) == {f.name for f in config.features}


def test_drift_warns_by_default(data, tmp_path):
    _, config, baseline, _, shifted = data
    report, result, error = _gate(tmp_path, config, shifted, baseline)
    assert error is None and [f["feature"] for f in result["findings"]] == ["trip_miles"]
    assert result["findings"][0]["action"] == "warn" and report.get_int_custom_property("drifted") == 1


def test_drift_blocks_by_kind_and_a_feature_can_be_off(data, tmp_path):
    _, config, baseline, _, shifted = data
    blocking = config.model_copy(update={"monitoring": config.monitoring.model_copy(update={
        "drift": config.monitoring.drift.model_copy(update={"kinds": {"numeric": "block"}})})})
    report, result, error = _gate(tmp_path, blocking, shifted, baseline)
    assert error is not None and "trip_miles (block)" in str(error) and "nothing was trained or pushed" in str(error)
    assert report.get_int_custom_property("blocked") == 1
    off = blocking.model_copy(update={"monitoring": blocking.monitoring.model_copy(update={
        "drift": blocking.monitoring.drift.model_copy(update={"features": {"trip_miles": "off"}})})})
    report, result, error = _gate(tmp_path, off, shifted, baseline)
    assert error is None and "trip_miles" not in {f["feature"] for f in result["features"]}

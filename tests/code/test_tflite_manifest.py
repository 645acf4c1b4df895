"""The edge manifest and its atomic publication."""
import json
import os

from serving import layout


def test_manifest_records_inputs_outputs_metrics_and_hashes():
    files = {layout.FLOAT_MODEL: b"float model", layout.QUANTIZED_MODEL: b"small"}
    content = layout.build_manifest("1700000000", "taxi", [{"name": "fare", "dtype": "float32", "default": 0.0}],
                                    "scores", files, {"max_score_diff": 1e-7}, signature="serving_raw")
    assert content["version"] == 1700000000 and content["outputs"] == ["scores"]
    assert content["inputs"] == [{"name": "fare", "dtype": "float32", "default": 0.0, "shape": [-1]}]
    assert content["files"][layout.FLOAT_MODEL] == {"sha256": layout.sha256(b"float model"), "bytes": 11}


def test_publish_is_one_rename_and_keeps_an_existing_version(tmp_path):
    base = tmp_path / "edge" / "taxi"
    files = {layout.FLOAT_MODEL: b"v1"}
    target = layout.publish_edge_version(str(base), "5", files, {"version": 5})
    assert os.listdir(base) == ["5"]
    assert json.loads((base / "5" / layout.MANIFEST).read_text()) == {"version": 5}
    assert layout.publish_edge_version(str(base), "5", {layout.FLOAT_MODEL: b"other"}, {"version": 5}) == target
    assert (base / "5" / layout.FLOAT_MODEL).read_bytes() == b"v1"

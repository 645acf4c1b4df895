"""The edge runtime on a published TFLite model of a real Trainer: LiteRT only, no TensorFlow."""
import json
import logging
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving import layout
from serving.edge import runtime
from tests.helpers import TFXLINE, example_rows, split_examples


@pytest.fixture(scope="module")
def edge_base(tiny_model):
    return tiny_model.edge_base


@pytest.fixture(scope="module")
def model(edge_base):
    return runtime.load_newest(edge_base)


def test_runtime_imports_and_predicts_without_tensorflow(edge_base, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"fare": 12.5, "payment_type": "Credit Card", "trip_start_hour": 9}) + "\n")
    code = ("import sys; from pipeline.cli import main; rc = main(['edge', 'predict', sys.argv[1], '--edge-dir', "
            "sys.argv[2]]); print('TF' if any(m.split('.')[0] == 'tensorflow' for m in sys.modules) else 'no TF'); "
            "sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, str(rows), os.path.dirname(edge_base)],
                            capture_output=True, text=True, timeout=120)
    installed = subprocess.run([TFXLINE, "edge", "predict", str(rows), "--edge-dir", os.path.dirname(edge_base)],
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0 and installed.stdout.splitlines()[0] == result.stdout.splitlines()[0]
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "no TF"
    assert 0.0 <= json.loads(lines[0])["scores"][0] <= 1.0


def test_the_edge_server_and_stream_import_without_tensorflow():
    """What the device runs for `tfxline edge serve` and `edge stream`, down to the REST server and the
    registry, loads no TensorFlow (the import contract cannot see imports inside functions)."""
    code = ("import sys; import serving.edge.serve, serving.edge.stream, serving.rest, serving.inference, "
            "serving.registry; from serving.edge import cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tfx', 'apache_beam')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_edge_scores_match_the_saved_model_with_unseen_and_missing_values(tiny_model, model):
    import tensorflow as tf

    names = {item["name"] for item in model.inputs}
    rows = example_rows(split_examples(tiny_model.examples_uri, "eval", limit=200), names)
    for row in rows[::4]:
        row["payment_type"] = "Bitcoin"
        row.pop("company", None)
        row.pop("trip_miles", None)
    version_dir = os.path.join(tiny_model.serving_base, tiny_model.version)
    saved_model = tf.saved_model.load(version_dir)
    expected = saved_model.signatures["serving_raw"](**{
        name: tf.constant(values) for name, values in runtime.to_columns(rows, model.inputs).items()})["scores"]
    np.testing.assert_allclose(model.predict(rows), expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("row, message", [
    ({"fare": "twelve"}, "feature 'fare': expected a number"),
    ({"trip_start_hour": 7.5}, "feature 'trip_start_hour': expected an integer"),
    ({"payment_type": ["Cash"]}, "feature 'payment_type': expected a string"),
    ({"tip_amount": 3.0}, "unknown feature(s) ['tip_amount']"),
])
def test_bad_rows_are_refused_with_the_feature_named(model, row, message):
    with pytest.raises(runtime.BadInput) as error:
        model.predict([row])
    assert message in str(error.value)


def test_concurrent_requests_get_the_answers_of_sequential_ones(tiny_model, model):
    rows = example_rows(split_examples(tiny_model.examples_uri, "eval", limit=64), {i["name"] for i in model.inputs})
    sequential = [model.predict([row]) for row in rows]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda row: model.predict([row]), rows * 4))
    for index, result in enumerate(concurrent):
        np.testing.assert_array_equal(result, sequential[index % len(rows)])


def _copy_as_newer(edge_base, tmp_path):
    base = tmp_path / "edge" / "taxi"
    newest = layout.versions(edge_base)[-1]
    shutil.copytree(os.path.join(edge_base, str(newest)), base / str(newest))
    shutil.copytree(os.path.join(edge_base, str(newest)), base / str(newest + 1))
    return base, newest


def test_a_corrupt_newer_version_is_refused_and_the_old_one_keeps_serving(edge_base, tmp_path, caplog):
    base, good = _copy_as_newer(edge_base, tmp_path)
    model_file = base / str(good + 1) / "model.tflite"
    model_file.write_bytes(model_file.read_bytes()[:1000])
    with caplog.at_level(logging.ERROR, logger="tfxline.edge"):
        loaded = runtime.load_newest(str(base))
    assert loaded.version == good
    assert "sha256 does not match the manifest" in caplog.text


def test_a_corrupt_file_with_a_matching_hash_is_refused_by_litert(edge_base, tmp_path):
    base, good = _copy_as_newer(edge_base, tmp_path)
    directory = base / str(good + 1)
    (directory / "model.tflite").write_bytes(b"not a flatbuffer")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["model.tflite"]["sha256"] = layout.sha256(b"not a flatbuffer")
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtime.EdgeModelError, match="LiteRT cannot load"):
        runtime.load(str(directory))
    assert runtime.load_newest(str(base)).version == good


def test_cli_scores_a_csv_with_extra_columns(edge_base, taxi_rows, tmp_path, capsys):
    from serving.edge.cli import main
    from tests.conftest import write_csv

    header, rows = taxi_rows
    write_csv(tmp_path / "rows.csv", header, rows[:5])
    assert main(["predict", str(tmp_path / "rows.csv"), "--edge-dir", os.path.dirname(edge_base),
                 "--variant", "quantized"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["row"] for line in lines] == [0, 1, 2, 3, 4]

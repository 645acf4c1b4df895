"""`tfxline score` through the installed command on the tiny model's pushed version: CSV with other
columns and bad rows, several files on multi-process workers, the pipeline's TFRecord examples, the
request log a real `tfxline serve` writes, every output format, and the failures."""
import csv
import glob
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from scoring import inputs
from serving.edge.runtime import to_columns
from tests.conftest import write_config, write_csv
from tests.helpers import TFXLINE, example_rows, split_examples
from tests.serving.conftest import Server


def score(tiny_model, *args, config=None):
    config = config or tiny_model_config(tiny_model)
    return subprocess.run([TFXLINE, "score", *map(str, args), "--serving-dir",
                           os.path.dirname(tiny_model.serving_base), "--config", str(config)],
                          capture_output=True, text=True, timeout=600)


def tiny_model_config(tiny_model):
    return Path(tiny_model.examples_uri).parents[1] / "config.yaml"


@pytest.fixture(scope="module")
def model_inputs(tiny_model):
    with open(os.path.join(tiny_model.serving_base, tiny_model.version, "assets.extra", "raw_features.json")) as h:
        return json.load(h)


@pytest.fixture(scope="module")
def signature(tiny_model):
    return tf.saved_model.load(os.path.join(tiny_model.serving_base, tiny_model.version)).signatures["serving_raw"]


def expected_scores(signature, model_inputs, rows):
    """The SavedModel's answer for CSV rows (strings as read, empty = the missing value)."""
    columns = to_columns([{i["name"]: row[i["name"]] for i in model_inputs} for row in rows], model_inputs)
    return signature(**{name: tf.constant(values) for name, values in columns.items()})["scores"].numpy()[:, 0]


def read_scores(directory, pattern="scores-*.csv"):
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, pattern))):
        with open(path, newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def read_rejects(directory):
    return [json.loads(line) for path in sorted(glob.glob(os.path.join(directory, "rejects-*.jsonl")))
            for line in open(path) if line.strip()]


BAD_ROWS = {  # row index -> (column, value, what the reason says)
    3: ("fare", "twelve", "feature 'fare': expected a number"),
    8: ("trip_start_hour", "7.5", "feature 'trip_start_hour': expected an integer"),
    12: ("trip_miles", "nan", "feature 'trip_miles': 'nan' is not a finite number"),
}


def test_a_csv_with_other_columns_and_bad_rows(tiny_model, taxi_rows, model_inputs, signature, tmp_path):
    header, rows = taxi_rows
    header = ["trip_id", *header]
    table = [[f"t{index:04d}", *row] for index, row in enumerate(rows[:400])]
    for index, (column, value, _) in BAD_ROWS.items():
        table[index][header.index(column)] = value
    path = write_csv(tmp_path / "in" / "trips.csv", header, table)
    with open(path, "a") as handle:  # a short row and a blank line at the end
        handle.write("t9999,1,2\n\n")
    result = score(tiny_model, path, "--output", tmp_path / "out", "--id-columns", "trip_id",
                   "--max-reject-share", "0.05")
    assert result.returncode == 0, result.stderr
    assert f"397 rows scored with taxi version {tiny_model.version}" in result.stdout

    scored = read_scores(tmp_path / "out")
    assert list(scored[0]) == ["trip_id", "scores", "model_version"]
    by_id = {row["trip_id"]: row for row in scored}
    good = [index for index in range(400) if index not in BAD_ROWS]
    assert sorted(by_id) == [f"t{index:04d}" for index in good] and len(scored) == len(good)
    assert {row["model_version"] for row in scored} == {tiny_model.version}
    records = [dict(zip(header, table[index])) for index in good]
    np.testing.assert_allclose([float(by_id[r["trip_id"]]["scores"]) for r in records],
                               expected_scores(signature, model_inputs, records), atol=1e-6)

    rejects = read_rejects(tmp_path / "out")
    assert [r["row"] for r in rejects] == [*BAD_ROWS, 400]
    for reject, (_, _, reason) in zip(rejects, BAD_ROWS.values()):
        assert reason in reject["reason"] and reject["source"] == "trips.csv"
        assert reject["line"].startswith(table[reject["row"]][0] + ",")
    assert rejects[-1]["reason"] == f"3 fields where the header has {len(header)}"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["rows_scored"], summary["rows_rejected"]) == (397, 4)


def test_more_rejects_than_the_configured_share_fail_the_job(tiny_model, taxi_rows, tmp_path):
    header, rows = taxi_rows
    table = [list(row) for row in rows[:50]]
    for row in table[:5]:
        row[header.index("fare")] = "n/a"
    path = write_csv(tmp_path / "in.csv", header, table)
    result = score(tiny_model, path, "--output", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "tfxline score: 5 of 50 rows rejected (10.0%), more than scoring.max_reject_share 1.0%; the reasons are in "
        f"{tmp_path / 'out' / 'rejects-*.jsonl'}"]
    assert len(read_rejects(tmp_path / "out")) == 5 and len(read_scores(tmp_path / "out")) == 45


def test_several_files_on_multi_process_workers_join_back_by_source_and_row(tiny_model, taxi_rows, model_inputs,
                                                                             signature, tmp_path):
    header, rows = taxi_rows
    files = {"a.csv": rows[:700], "b.csv": rows[700:1000]}
    for name, part in files.items():
        write_csv(tmp_path / "in" / name, header, part)
    config = write_config(tmp_path / "config", beam={"profile": "multi_process"}, training={"epochs": 2})
    # 5 rows a batch: ranges of 160 rows, so a file is split between the workers.
    result = score(tiny_model, tmp_path / "in", "--output", tmp_path / "out", "--batch-size", "5", config=config)
    assert result.returncode == 0, result.stderr
    scored = read_scores(tmp_path / "out")
    assert len(scored) == 1000
    keys = {(row["source"], int(row["row"])): float(row["scores"]) for row in scored}
    assert len(keys) == 1000
    for name, part in files.items():
        records = [dict(zip(header, row)) for row in part]
        np.testing.assert_allclose([keys[(name, index)] for index in range(len(part))],
                                   expected_scores(signature, model_inputs, records), atol=1e-6)


def test_the_pipelines_tfrecord_examples_in_every_output_format(tiny_model, model_inputs, signature, tmp_path):
    import pyarrow.parquet as pq

    split = os.path.join(tiny_model.examples_uri, "Split-eval")
    serialized = split_examples(tiny_model.examples_uri, "eval", limit=10_000)
    names = {i["name"] for i in model_inputs}
    expected = expected_scores(signature, model_inputs, [{n: r.get(n, "") for n in names}
                                                         for r in example_rows(serialized, names)])
    answers = {}
    for output_format in ("csv", "tfrecord", "parquet"):
        out = tmp_path / output_format
        result = score(tiny_model, split, "--output", out, "--format", output_format)
        assert result.returncode == 0, result.stderr
        if output_format == "csv":
            rows = read_scores(out)
            answers[output_format] = {int(r["row"]): float(r["scores"]) for r in rows}
        elif output_format == "tfrecord":
            files = glob.glob(str(out / "scores-*.tfrecord"))
            examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]
            answers[output_format] = {e.features.feature["row"].int64_list.value[0]:
                                      e.features.feature["scores"].float_list.value[0] for e in examples}
            assert {e.features.feature["model_version"].int64_list.value[0] for e in examples} == {
                int(tiny_model.version)}
        else:
            table = pq.read_table(glob.glob(str(out / "scores-*.parquet")))
            answers[output_format] = dict(zip(table.column("row").to_pylist(), table.column("scores").to_pylist()))
    for output_format, by_row in answers.items():
        assert sorted(by_row) == list(range(len(serialized))), output_format
        np.testing.assert_allclose([by_row[i] for i in range(len(serialized))], expected, atol=1e-6)


def test_the_request_log_a_real_server_writes(tiny_model, model_inputs, signature, tmp_path):
    import requests

    serving_dir = os.path.dirname(tiny_model.serving_base)
    log_dir = tmp_path / "log"
    server = Server([f"--model_config_file={os.path.join(serving_dir, 'models.local.config')}",
                     f"--request_log_dir={log_dir}", "--request_log_sample_rate=1"], tmp_path)
    names = {i["name"] for i in model_inputs}
    rows = example_rows(split_examples(tiny_model.examples_uri, "eval", limit=30), names)
    defaults = {i["name"]: i["default"] for i in model_inputs}
    try:
        server.wait_ready("/v1/models/taxi")
        for row in rows:
            response = requests.post(f"{server.url}/v1/models/taxi:predict", timeout=10,
                                     json={"signature_name": "serving_raw", "instances": [{**defaults, **row}]})
            assert response.status_code == 200, response.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not glob.glob(str(log_dir / "*.tfrecord*")):
            time.sleep(0.2)
    finally:
        server.stop()
    result = score(tiny_model, log_dir, "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    scored = read_scores(tmp_path / "out")
    assert len(scored) == len(rows)
    records = [{**{n: "" for n in names}, **row} for row in rows]
    np.testing.assert_allclose([float(r["scores"]) for r in sorted(scored, key=lambda r: int(r["row"]))],
                               expected_scores(signature, model_inputs, records), atol=1e-6)


@pytest.mark.parametrize("case, problem", [
    ("version", "version 7 of taxi is not under"),
    ("output", "is not empty; pass a new or empty --output directory"),
    ("header", "the header lacks ['fare']"),
    ("other_model", "no readable assets.extra/raw_features.json"),
])
def test_a_job_that_cannot_start_fails_in_one_line(tiny_model, taxi_rows, tmp_path, case, problem):
    header, rows = taxi_rows
    path = write_csv(tmp_path / "in.csv", header, rows[:5])
    output = tmp_path / "out"
    args = [path, "--output", output]
    if case == "version":
        args += ["--version", "7"]
    elif case == "output":
        output.mkdir()
        (output / "old.csv").write_text("x\n")
    elif case == "header":
        column = header.index("fare")
        path = write_csv(tmp_path / "in.csv", header[:column] + header[column + 1:],
                         [row[:column] + row[column + 1:] for row in rows[:5]])
        args[0] = path
    else:
        from tests.serving.conftest import build_half_plus

        build_half_plus(tmp_path / "serving" / "half" / "1", 2.0)
        args += ["--model-name", "half", "--version", "1"]
    result = score(tiny_model, *args) if case != "other_model" else subprocess.run(
        [TFXLINE, "score", *map(str, args), "--serving-dir", str(tmp_path / "serving")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert problem in result.stderr and result.stderr.startswith("tfxline score: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_ranges_cover_a_file_line_by_line(tmp_path):
    lines = [f"{index},{'x' * (index % 13)}" for index in range(1000)]
    path = tmp_path / "data.csv"
    path.write_text("a,b\n" + "\n".join(lines))  # no newline at the end
    item = inputs.InputFile(str(path), "data.csv", inputs.CSV, header=("a", "b"))
    parts = list(inputs.plan(item, rows_per_chunk=37, block_bytes=1000))
    assert [p.first_row for p in parts] == list(range(0, 1000, 37))
    text = path.read_bytes()
    assert b"".join(text[p.start:p.start + p.length] for p in parts) == text[len(b"a,b\n"):]
    assert all(text[p.start:p.start + p.length].decode().split("\n")[0] == lines[p.first_row] for p in parts)

"""The batched CSV executor against TFX's own CsvExampleGen executor, both run for real on Beam."""
import csv
import glob
import os

import pytest
import tensorflow as tf
from google.protobuf import json_format
from tfx.components.example_gen.csv_example_gen import executor as tfx_csv_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx_bsl.coders import csv_decoder

from components.batched_csv_example_gen import executor

HEADER = ["id", "fare", "company", "never_set", "int64_edge", "underscored", "digits", "huge", "tiny"]


def _rows():
    """Cells CSV type inference must get right: quotes, commas and newlines inside strings,
    int64 limits and beyond, Python-only int syntax, non-ASCII digits, float specials."""
    floats = ["1.5", "2", "", "nan", "-0", "1e40", "inf", " 7 "]
    strings = ["Cash", "Flash, Cab", "two\nlines", "Ünïcode", "", '"quoted"']
    edges = ["9223372036854775807", "-9223372036854775808", "12"]
    return [[str(i), floats[i % 8], strings[i % 6], "", edges[i % 3], ["1_000", "3", ""][i % 3],
             ["١٢", "5"][i % 2], ["99999999999999999999", "1"][i % 2], ["0.1", "3.4028235e38", "1e-50"][i % 3]]
            for i in range(240)]


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tricky_csv")
    rows = _rows()
    with open(directory / "a.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(rows[:120])
        handle.write("\r\n")  # a blank line is skipped
    with open(directory / "b.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows[120:])
    return directory


def _run(executor_class, data_dir, out_dir):
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    properties = {
        specs.INPUT_BASE_KEY: str(data_dir),
        specs.INPUT_CONFIG_KEY: json_format.MessageToJson(example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*.csv")])),
        specs.OUTPUT_CONFIG_KEY: json_format.MessageToJson(example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)]))),
        specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    context = executor_class.Context(beam_pipeline_args=["--direct_running_mode=in_memory"],
                                     tmp_dir=str(out_dir / "tmp"), unique_id="1")
    executor_class(context).Do({}, {"examples": [examples]}, properties)
    return {split: sorted(tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True)
                          for record in tf.data.TFRecordDataset(
                              glob.glob(os.path.join(out_dir, f"Split-{split}", "*")), compression_type="GZIP"))
            for split in ("train", "eval")}


def test_same_examples_in_the_same_splits_as_tfx_csv_example_gen(csv_dir, tmp_path):
    expected = _run(tfx_csv_executor.Executor, csv_dir, tmp_path / "tfx")
    actual = _run(executor.Executor, csv_dir, tmp_path / "batched")
    assert sum(len(records) for records in actual.values()) == 240
    assert actual == expected


def test_inferred_types_follow_tfx_bsl(csv_dir):
    column_types = executor.merge_column_types(
        executor.file_column_types(str(path), HEADER) for path in sorted(csv_dir.glob("*.csv")))
    inferrer = csv_decoder.ColumnTypeInferrer(HEADER, skip_blank_lines=True)
    accumulator = inferrer.create_accumulator()
    for row in _rows():
        accumulator = inferrer.add_input(accumulator, [cell.encode() for cell in row])
    assert column_types == [info.type for info in inferrer.extract_output(accumulator)]
    assert dict(zip(HEADER, column_types)) == {
        "id": csv_decoder.ColumnType.INT, "fare": csv_decoder.ColumnType.FLOAT,
        "company": csv_decoder.ColumnType.STRING, "never_set": csv_decoder.ColumnType.UNKNOWN,
        "int64_edge": csv_decoder.ColumnType.INT, "underscored": csv_decoder.ColumnType.INT,
        "digits": csv_decoder.ColumnType.STRING, "huge": csv_decoder.ColumnType.STRING,
        "tiny": csv_decoder.ColumnType.FLOAT}


def test_a_row_with_the_wrong_number_of_fields_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match=r"bad\.csv"):
        executor.file_column_types(str(path), ["a", "b"])


def test_files_of_one_split_must_share_a_header(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("a,b\n1,2\n")
    (tmp_path / "data" / "b.csv").write_text("a,c\n1,2\n")
    with pytest.raises(RuntimeError, match="different header"):
        _run(executor.Executor, tmp_path / "data", tmp_path / "out")

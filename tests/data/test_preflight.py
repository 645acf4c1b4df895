"""Input CSV checks that run before any TFX work."""
import pytest

from config import load_config
from pipeline.preflight import DataError, check_csv_files, input_files
from tests.conftest import write_config, write_csv


def _config(tmp_path, data_dir, **data):
    return load_config(str(write_config(tmp_path / "cfg", data={"path": str(data_dir), **data})))


def test_counts_rows_of_a_good_file(tmp_path, taxi_rows):
    header, rows = taxi_rows
    write_csv(tmp_path / "d" / "a.csv", header, rows[:25])
    write_csv(tmp_path / "d" / "b.csv", header, rows[25:40])
    assert check_csv_files(_config(tmp_path, tmp_path / "d")) == 40


def test_malformed_row_names_file_and_line(tmp_path, taxi_rows):
    header, rows = taxi_rows
    bad = [r for r in rows[:10]]
    bad[4] = bad[4][:-3]
    write_csv(tmp_path / "d" / "data.csv", header, bad)
    with pytest.raises(DataError, match=r"data.csv: line 6 has \d+ fields, the header has 18"):
        check_csv_files(_config(tmp_path, tmp_path / "d"))


def test_missing_column_is_named(tmp_path, taxi_rows):
    header, rows = taxi_rows
    drop = header.index("payment_type")
    write_csv(tmp_path / "d" / "data.csv", [h for i, h in enumerate(header) if i != drop],
              [[v for i, v in enumerate(r) if i != drop] for r in rows[:10]])
    with pytest.raises(DataError, match=r"\['payment_type'\] missing from the header"):
        check_csv_files(_config(tmp_path, tmp_path / "d"))


def test_empty_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data.csv").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        check_csv_files(_config(tmp_path, tmp_path / "d"))


def test_header_without_rows(tmp_path, taxi_rows):
    write_csv(tmp_path / "d" / "data.csv", taxi_rows[0], [])
    with pytest.raises(DataError, match="no data rows"):
        check_csv_files(_config(tmp_path, tmp_path / "d"))


def test_no_matching_files(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="no CSV files match"):
        check_csv_files(_config(tmp_path, tmp_path / "d"))


def test_span_pattern_reads_the_newest_span_only(tmp_path, taxi_rows):
    header, rows = taxi_rows
    for span, count in ((1, 10), (2, 20), (10, 30)):
        write_csv(tmp_path / "d" / f"span-{span}" / "data.csv", header, rows[:count])
    config = _config(tmp_path, tmp_path / "d", span_pattern="span-{SPAN}/*.csv")
    assert [p.split("/")[-2] for p in input_files(config)] == ["span-10"]
    assert check_csv_files(config) == 30


def test_a_binary_label_column_must_hold_zeros_and_ones(tmp_path):
    rows = [[f"{i * 0.5}", "1" if i % 3 else "0"] for i in range(20)]
    rows[7][1] = "2"
    write_csv(tmp_path / "d" / "parts.csv", ["pressure", "defective"], rows)
    config = load_config(str(write_config(
        tmp_path / "cfg", data={"path": str(tmp_path / "d")}, schema={"source": "inferred"},
        features=[{"name": "pressure", "kind": "numeric"}],
        label={"column": "defective", "rule": "none", "name": "defective"},
        evaluation={"thresholds": {"auc": 0.5}, "slices": [[]], "fairness": {}})))
    with pytest.raises(DataError, match=r"parts.csv: line 9: label column 'defective' is '2'; task 'binary'"):
        check_csv_files(config)
    rows[7][1] = "1"
    write_csv(tmp_path / "d" / "parts.csv", ["pressure", "defective"], rows)
    assert check_csv_files(config) == 20

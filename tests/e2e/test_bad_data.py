"""Bad data stops the run before training; nothing is pushed; the serving directory is untouched."""
import os
import subprocess

import pytest

from metadata import runs
from tests.conftest import run_pipeline, write_config, write_csv
from tests.helpers import TFXLINE, progress_fields, store_for

pytestmark = pytest.mark.e2e
ROWS = 1000


def _run_on(tmp_path, header, rows):
    write_csv(tmp_path / "data" / "data.csv", header, rows)
    config_path = write_config(tmp_path, data={"path": str(tmp_path / "data")},
                               output={"root": str(tmp_path / "out")})
    serving = tmp_path / "out" / "serving" / "taxi" / "1"
    serving.mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(b"the version already being served")
    config, lines, error = run_pipeline(config_path)
    return config, lines, error


def _assert_stopped_at_gate(config, lines, error, *expected):
    assert error is not None and type(error).__name__ == "DataAnomaliesError"
    for text in expected:
        assert text in str(error)
    assert progress_fields(lines[-1]) == ["AnomalyGate", "FAILED"]
    executed = runs.executions_by_component(store_for(config), config.name)
    assert not {"Transform", "Trainer", "Evaluator", "Pusher"} & set(executed)
    base = os.path.join(config.output.serving, config.name)
    assert os.listdir(base) == ["1"]
    with open(os.path.join(base, "1", "saved_model.pb"), "rb") as handle:
        assert handle.read() == b"the version already being served"


def _with_values(taxi_rows, column: str, value: str, every: int):
    """The first ROWS rows with `column` set to `value` in every `every`-th row."""
    header, rows = taxi_rows
    index = header.index(column)
    rows = [list(r) for r in rows[:ROWS]]
    for row in rows[::every]:
        row[index] = value
    return header, rows


def test_categorical_value_outside_the_schema_domain(tmp_path, taxi_rows):
    _assert_stopped_at_gate(*_run_on(tmp_path, *_with_values(taxi_rows, "payment_type", "Bitcoin", every=3)),
                            "payment_type: ENUM_TYPE_UNEXPECTED_STRING_VALUES")


def test_missing_label_values(tmp_path, taxi_rows):
    _assert_stopped_at_gate(*_run_on(tmp_path, *_with_values(taxi_rows, "tips", "", every=10)),
                            "tips: FEATURE_TYPE_LOW_NUMBER_VALUES")


def test_extra_column(tmp_path, taxi_rows):
    header, rows = taxi_rows
    _assert_stopped_at_gate(*_run_on(tmp_path, header + ["driver_rating"], [r + ["5"] for r in rows[:ROWS]]),
                            "driver_rating: SCHEMA_NEW_COLUMN")


@pytest.mark.parametrize("damage, message", [
    ("malformed", "line 3 has"),
    ("missing_column", "['company'] missing from the header"),
    ("empty", "the file is empty"),
])
def test_cli_stops_unreadable_csv_before_any_tfx_work(tmp_path, taxi_rows, damage, message):
    header, rows = taxi_rows
    data = tmp_path / "data"
    if damage == "malformed":
        write_csv(data / "data.csv", header, [rows[0], rows[1][:5]] + rows[2:50])
    elif damage == "missing_column":
        keep = [i for i, name in enumerate(header) if name != "company"]
        write_csv(data / "data.csv", [header[i] for i in keep], [[r[i] for i in keep] for r in rows[:50]])
    else:
        data.mkdir()
        (data / "data.csv").write_text("")
    config_path = write_config(tmp_path, data={"path": str(data)}, output={"root": str(tmp_path / "out")})
    result = subprocess.run([TFXLINE, "run", "--config", str(config_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("tfxline: data error:") and message in result.stderr
    assert not (tmp_path / "out" / "serving").exists()

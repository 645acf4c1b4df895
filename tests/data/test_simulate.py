"""`tfxline data simulate`: the same seed gives the same span byte for byte; each shift moves what it says by
the size it is given, and nothing else."""
import csv
import subprocess

import pytest

from config import load_config
from tests.conftest import write_config, write_csv
from tests.helpers import TFXLINE

ROWS = 2000


@pytest.fixture
def spans_config(tmp_path, taxi_rows):
    header, rows = taxi_rows
    write_csv(tmp_path / "data" / "span-1" / "data.csv", header, rows[:ROWS])
    return write_config(tmp_path, data={"path": str(tmp_path / "data"), "span_pattern": "span-{SPAN}/*.csv"},
                        output={"root": str(tmp_path / "out")})


def _simulate(config, *flags):
    result = subprocess.run([TFXLINE, "data", "simulate", "--config", str(config), *flags],
                            capture_output=True, text=True, timeout=120)
    return result


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_same_seed_same_bytes(spans_config, tmp_path):
    flags = ["--scale", "trip_miles=40@0.5", "--move-share", "payment_type=Cash:-5", "--missing", "fare=0.1",
             "--rows", "1500"]
    outputs = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        result = _simulate(spans_config, *flags, "--seed", seed, "--output", str(tmp_path / f"{name}.csv"))
        assert result.returncode == 0, result.stderr
        outputs.append((tmp_path / f"{name}.csv").read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_next_span_goes_under_the_span_pattern(spans_config, tmp_path):
    result = _simulate(spans_config)
    assert result.returncode == 0, result.stderr
    assert "span-2/data.csv (span 2)" in result.stdout
    assert (tmp_path / "data" / "span-2" / "data.csv").read_bytes() == \
        (tmp_path / "data" / "span-1" / "data.csv").read_bytes().replace(b"\r\n", b"\n")
    again = _simulate(spans_config, "--span", "2")
    assert again.returncode == 1 and "exists" in again.stderr  # a span is never overwritten


def test_each_shift_has_its_size(spans_config, tmp_path):
    source = _rows(tmp_path / "data" / "span-1" / "data.csv")
    output = tmp_path / "shifted.csv"
    result = _simulate(spans_config, "--output", str(output), "--scale", "trip_miles=40@0.5", "--offset",
                       "pickup_latitude=0.01", "--move-share", "company=Flash Cab:+10", "--new-category",
                       "payment_type=Bitcoin:0.05", "--missing", "trip_seconds=0.3", "--label-threshold", "0.3")
    assert result.returncode == 0, result.stderr
    shifted = _rows(output)
    assert len(shifted) == len(source) == ROWS
    present = [(a, b) for a, b in zip(source, shifted) if a["trip_miles"]]
    scaled = [a for a, b in present if float(b["trip_miles"]) == pytest.approx(40 * float(a["trip_miles"]))
              and float(a["trip_miles"]) != 0]
    unchanged = [a for a, b in present if a["trip_miles"] == b["trip_miles"]]
    assert len(scaled) + len(unchanged) == len(present)
    assert len(present) / 2 - 60 < len(scaled) + sum(float(a["trip_miles"]) == 0 for a, _ in present) / 2 \
        < len(present) / 2 + 60
    assert all(float(b["pickup_latitude"]) == pytest.approx(float(a["pickup_latitude"]) + 0.01)
               for a, b in zip(source, shifted) if a["pickup_latitude"])
    share = lambda rows, column, value: sum(r[column] == value for r in rows) / len(rows)  # noqa: E731
    assert share(shifted, "company", "Flash Cab") - share(source, "company", "Flash Cab") == pytest.approx(0.10)
    assert share(shifted, "payment_type", "Bitcoin") == pytest.approx(0.05)
    assert share(shifted, "trip_seconds", "") == pytest.approx(0.3)
    config = load_config(str(spans_config))
    for a, b in zip(source, shifted):
        if a["tips"] and b["fare"]:  # the config's rule on the new data gives the new rule's label
            fare = float(b["fare"])
            assert (float(b["tips"]) > config.label.threshold * fare) == (float(a["tips"]) > 0.3 * fare)


@pytest.mark.parametrize("flags, problem", [
    (["--scale", "payment_type=2"], "'payment_type' is not numeric"),
    (["--scale", "no_such=2"], "'no_such' is not a column"),
    (["--missing", "fare=1.5"], "must be between 0 and 1"),
    (["--new-category", "payment_type=Cash:0.1"], "already a value"),
    (["--move-share", "payment_type"], "write FEATURE="),
])
def test_bad_shifts_are_one_line_errors(spans_config, flags, problem):
    result = _simulate(spans_config, *flags)
    assert result.returncode == 1
    assert result.stderr.startswith("tfxline data simulate: ") and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

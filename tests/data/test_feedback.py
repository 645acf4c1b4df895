"""`tfxline feedback ingest` as installed: labels joined to the server's request log exactly once, whatever the
order, duplication and lateness of the feedback; unknown ids kept; malformed rows and a missing column refused."""
import json
import os
import subprocess

import numpy as np
import pytest

from monitoring import tfrecord
from serving.request_log import to_examples
from tests.conftest import write_config
from tests.helpers import TFXLINE

START_MS = 1_700_000_000_000


def _log_requests(directory, requests, suffix=""):
    """(id, version, [score per row]) as the server logs them (serving/request_log.to_examples)."""
    directory.mkdir(parents=True, exist_ok=True)
    records = []
    for index, (identifier, version, scores) in enumerate(requests):
        inputs = {"trip_miles": np.full(len(scores), 1.0 + index, np.float32)}
        records += to_examples(version, inputs, {"scores": np.array(scores, np.float32).reshape(-1, 1)},
                               START_MS + 1000 * index, identifier)
    tfrecord.write_records(str(directory / f"taxi.requests.tfrecord{suffix}"), records)


def _ingest(config, path):
    return subprocess.run([TFXLINE, "feedback", "ingest", str(path), "--config", str(config)], capture_output=True,
                          text=True, timeout=180)


def _joined(out):
    directory = out / "feedback" / "taxi"
    records = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("joined-"):
            records += [json.loads(line) for line in (directory / name).read_text().splitlines()]
    return {(r["request_id"], r["row"]): r for r in records}, len(records)


@pytest.fixture
def setup(tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path, output={"root": str(out)})
    _log_requests(out / "request_log", [("r1", 1, [0.9]), ("r2", 1, [0.2]), ("r3", 2, [0.7, 0.4]),
                                        ("r4", 2, [0.6])], suffix=f".{START_MS}")
    return tmp_path, config, out


def test_joined_exactly_once_across_out_of_order_duplicated_and_late_feedback(setup):
    tmp_path, config, out = setup
    first = tmp_path / "first.csv"
    # Out of order; r1 twice (the earlier label wins, wherever it is in the file); r9 is not logged yet.
    first.write_text("time,label,request_id,row\n"
                     "1700000100,0,r3,1\n"
                     "1700000200,0,r1,\n"
                     "2023-11-14T22:14:00Z,1,r1,0\n"
                     "1700000050,1,r3,0\n"
                     "1700000060,0,r2,0\n"
                     "1700000070,1,r9,0\n")
    result = _ingest(config, first)
    assert result.returncode == 0, result.stderr
    line = result.stdout
    assert "6 rows" in line and "4 joined (by version 1: 2, 2: 2)" in line
    assert "1 duplicate(s) in the file (the earliest label kept; 1 with another label)" in line
    assert "1 unknown id(s)" in line
    joined, count = _joined(out)
    assert count == 4 and set(joined) == {("r1", 0), ("r2", 0), ("r3", 0), ("r3", 1)}
    assert joined[("r1", 0)]["label"] == 1 and joined[("r1", 0)]["label_time_ms"] == 1_700_000_040_000
    assert joined[("r3", 1)]["scores"] == pytest.approx([0.4]) and joined[("r3", 1)]["model_version"] == 2
    assert joined[("r2", 0)]["request_time_ms"] == START_MS + 1000

    # A second file: r1 again (already joined), r4 days late, r9 still unknown.
    second = tmp_path / "second.jsonl"
    second.write_text('{"request_id": "r1", "label": 0, "time": 1700000300}\n'
                      '{"request_id": "r4", "label": "1", "time": "2023-11-20T10:00:00"}\n'
                      '{"request_id": "r9", "label": 1, "time": 1700000400}\n')
    result = _ingest(config, second)
    assert result.returncode == 0, result.stderr
    assert "1 joined (by version 2: 1)" in result.stdout and "1 already joined" in result.stdout
    assert "1 unknown id(s)" in result.stdout
    unmatched = result.stdout.split("kept in ")[1].split(" to ingest")[0]
    joined, count = _joined(out)
    assert count == 5 and joined[("r1", 0)]["label"] == 1  # the first join stands

    # r9's request reaches the log (it was written late); its kept row joins, and only once.
    _log_requests(out / "request_log", [("r9", 2, [0.3])])
    result = _ingest(config, unmatched)
    assert result.returncode == 0 and "1 joined (by version 2: 1)" in result.stdout, result.stdout + result.stderr
    result = _ingest(config, first)
    assert result.returncode == 0 and "0 joined" in result.stdout and "5 already joined" in result.stdout
    assert _joined(out)[1] == 6

    # The index lost (a crash, a copy without it): it is rebuilt from the joined files, nothing joins twice.
    (out / "feedback" / "taxi" / "joined.index").unlink()
    result = _ingest(config, second)
    assert result.returncode == 0 and "0 joined" in result.stdout and "3 already joined" in result.stdout
    assert _joined(out)[1] == 6


def test_malformed_rows_are_named_by_line_and_nothing_is_joined(setup):
    tmp_path, config, out = setup
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,label,time\n"
                   "r1,1,1700000100\n"
                   "r2,2,1700000100\n"
                   "r3,1,yesterday\n"
                   ",0,1700000100\n"
                   "r4,maybe,1700000100\n")
    result = _ingest(config, bad)
    assert result.returncode == 1 and result.stdout == ""
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert message.startswith(f"tfxline feedback ingest: {bad}: 4 malformed row(s): line 3: label '2' is not one of "
                              "the task's classes (0, 1); line 4: time 'yesterday' is neither Unix seconds nor "
                              "ISO 8601; line 5: no request_id; line 6: label 'maybe'")
    assert "nothing was joined" in message
    assert not (out / "feedback").exists()
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"request_id": "r1", "label": 1, "time": 1700000100}\n[1, 2]\n')
    result = _ingest(config, jsonl)
    assert result.returncode == 1 and "line 2: not a JSON object" in result.stderr


def test_a_missing_column_is_one_line(setup):
    tmp_path, config, out = setup
    path = tmp_path / "no_time.csv"
    path.write_text("request_id,label\nr1,1\n")
    result = _ingest(config, path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"tfxline feedback ingest: {path}: no column 'time' (it has request_id, "
                                     "label); feedback needs the columns request_id, label, time (and optionally "
                                     "row, the example's index in a request of several)")
    assert not (out / "feedback").exists()

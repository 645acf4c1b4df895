"""`tfxline release compare` as installed, on a serving directory with a stable and a canary version (fake
SavedModels: the labels are all that compare and --apply touch), a request log as the server writes it and
labels joined by `tfxline feedback ingest`'s code: the SRM check, the decision and --apply's record."""
import json
import subprocess
import time

import numpy as np
import pytest

from monitoring import feedback, tfrecord
from serving import release
from serving.release_state import write_serving_configs
from serving.request_log import to_examples
from tests.conftest import write_config
from tests.helpers import TFXLINE


def _setup(tmp_path, accuracy, labelled, logged=None, seed=0):
    """Stable 100 and canary 200; `labelled[v]` requests of each with a label, `accuracy[v]` of them right;
    `logged[v]` requests logged in all (default: the labelled ones)."""
    serving = tmp_path / "serving"
    for version in (100, 200):
        (serving / "taxi" / str(version) / "variables").mkdir(parents=True)
        (serving / "taxi" / str(version) / "saved_model.pb").write_bytes(b"graph")
    write_serving_configs(str(serving), "taxi", 100)
    assert release.main(["canary", "200", "--serving-dir", str(serving)]) == 0
    out = tmp_path / "out"
    config_path = write_config(tmp_path, output={"root": str(out), "serving_dir": str(serving)})
    rng = np.random.default_rng(seed)
    start_ms = (int(time.time()) + 2) * 1000
    logged = logged or labelled
    order = rng.permutation([v for v in (100, 200) for _ in range(logged[v])])
    records, rows, seen = [], [], {100: 0, 200: 0}
    for index, version in enumerate(order):
        identifier = f"q{index}"
        label = int(rng.integers(0, 2))
        right = rng.random() < accuracy[version]
        score = (0.9 if label else 0.1) if right else (0.1 if label else 0.9)
        records += to_examples(int(version), {"trip_miles": np.array([1.0], np.float32)},
                               {"scores": np.array([[score]], np.float32)}, start_ms + index, identifier)
        if seen[version] < labelled[version]:
            rows.append(f"{identifier},{label},{start_ms / 1000 + 3600 + index}\n")
        seen[version] += 1
    (out / "request_log").mkdir(parents=True)
    tfrecord.write_records(str(out / "request_log" / "taxi.requests.tfrecord"), records)
    (tmp_path / "labels.csv").write_text("request_id,label,time\n" + "".join(rows))
    from config import load_config

    time.sleep(max(0.0, start_ms / 1000 - time.time()))
    feedback.ingest(load_config(str(config_path)), str(tmp_path / "labels.csv"))
    return config_path, serving


def _compare(config_path, *flags):
    return subprocess.run([TFXLINE, "release", "compare", "--config", str(config_path), *flags], capture_output=True,
                          text=True, timeout=180)


def _history(serving):
    return json.loads((serving / "release_history.json").read_text())["taxi"]["events"]


def _one_line(result):
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_a_better_canary_is_promoted_with_the_numbers_recorded(tmp_path):
    config_path, serving = _setup(tmp_path, {100: 0.75, 200: 0.9}, {100: 800, 200: 800})
    shown = _compare(config_path)
    assert shown.returncode == 0, shown.stderr
    assert "split as expected" in shown.stdout and "labelled    stable 800  canary 800" in shown.stdout
    assert "decision: canary better" in shown.stdout
    assert [e["action"] for e in _history(serving)] == ["push", "canary"]  # without --apply nothing changes
    applied = _compare(config_path, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "tfxline release: promote 200 (canary better): stable 200, canary -" in applied.stdout
    event = _history(serving)[-1]
    assert event["action"] == "promote" and event["version"] == 200 and event["labels"] == {"stable": 200}
    decision = event["decision"]
    assert decision["decision"] == "better" and decision["labelled"] == [800, 800]
    assert decision["difference"] == pytest.approx(decision["canary_mean"] - decision["stable_mean"])
    assert decision["ci"][0] > 0 and decision["always_valid_p"] < 0.05 and decision["metric"] == "binary_accuracy"
    again = _compare(config_path)
    assert _one_line(again) == ("tfxline release: there is no canary of taxi to compare; set one with "
                                "`tfxline release canary VERSION`")


def test_a_worse_canary_is_dropped_and_stable_stays(tmp_path):
    config_path, serving = _setup(tmp_path, {100: 0.9, 200: 0.75}, {100: 800, 200: 800})
    applied = _compare(config_path, "--apply", "--metric", "log_loss")
    assert applied.returncode == 0, applied.stderr
    assert "decision: canary worse" in applied.stdout
    event = _history(serving)[-1]
    assert event["action"] == "clear-canary" and event["labels"] == {"stable": 100}
    assert event["decision"]["decision"] == "worse" and event["decision"]["metric"] == "log_loss"


def test_no_difference_is_not_yet_known_and_nothing_changes(tmp_path):
    config_path, serving = _setup(tmp_path, {100: 0.8, 200: 0.8}, {100: 300, 200: 300}, seed=3)
    applied = _compare(config_path, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "decision: not yet known (" in applied.stdout
    assert "--apply: no decision yet; nothing was changed" in applied.stdout
    assert [e["action"] for e in _history(serving)] == ["push", "canary"]


def test_too_few_labels_and_a_broken_split_decide_nothing(tmp_path):
    config_path, serving = _setup(tmp_path / "few", {100: 0.5, 200: 0.99}, {100: 60, 200: 60})
    message = _one_line(_compare(config_path, "--apply"))
    assert message.startswith("tfxline release: too few labelled requests since the canary was set (")
    assert "stable 100 has 60, canary 200 60; need 100 of each (--min-samples)" in message
    assert [e["action"] for e in _history(serving)] == ["push", "canary"]

    # 1,000 requests to stable and 300 to a canary meant to get half: the split is broken.
    config_path, serving = _setup(tmp_path / "srm", {100: 0.75, 200: 0.95}, {100: 300, 200: 300},
                                  logged={100: 1000, 200: 300})
    broken = _compare(config_path, "--apply")
    message = _one_line(broken)
    assert "split MISMATCH" in broken.stdout and "decision: canary better" in broken.stdout
    assert message.startswith("tfxline release: sample ratio mismatch: stable 1,000 and canary 300 requests")
    assert message.endswith("nothing was changed")
    assert [e["action"] for e in _history(serving)] == ["push", "canary"]
    # Given the real split, the same data pass the check and the decision is applied.
    applied = _compare(config_path, "--apply", "--canary-share", "0.23")
    assert applied.returncode == 0 and "split as expected" in applied.stdout, applied.stdout + applied.stderr
    assert _history(serving)[-1]["action"] == "promote"

"""Delayed labels: `tfxline feedback ingest` joins a feedback file (request id, label, time) to the requests
the server logged, exactly once per logged example.

The joined store (`<output root>/feedback/<model>/`) is append-only: each ingest adds one
`joined-<time>-<pid>.jsonl` (one line per joined example: its request id and row, model version, request
time, the model's scores, the label and when it arrived) and appends its keys to `joined.index`, the ids
already joined. Ingests take a lock, so two at once cannot join one id twice; an ingest that stopped after
writing its file but before the index is completed from the file by the next one. Feedback whose id is not
in the request log (not logged yet, not sampled, or rotated away) is counted and kept in
`unmatched-<time>-<pid>.jsonl`, in the feedback format, to ingest again later."""
import csv
import dataclasses
import datetime
import fcntl
import glob
import json
import math
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from config import PipelineConfig, names
from monitoring import requests as request_log

ID, LABEL, TIME, ROW = "request_id", "label", "time", "row"
REQUIRED = (ID, LABEL, TIME)
INDEX, LOCK = "joined.index", ".lock"
MAX_NAMED = 5  # malformed lines named in the one-line error


class FeedbackError(ValueError):
    """The feedback cannot be ingested; the message names the problem and what to do."""


@dataclasses.dataclass
class Ingest:
    rows: int
    joined: int
    by_version: Dict[int, int]
    already_joined: int         # joined by an earlier ingest
    duplicates: int             # more rows for a key in this file (the earliest label wins)
    conflicting: int            # of those, with another label
    unknown: int                # not in the request log
    joined_path: Optional[str]
    unmatched_path: Optional[str]
    store: str


def store_dir(config: PipelineConfig) -> str:
    return os.path.join(config.output.root, "feedback", config.name)


def label_values(config: PipelineConfig) -> Optional[List[str]]:
    """The task's classes as feedback may name them (None: regression, any finite number)."""
    if config.task == "regression":
        return None
    if config.label.classes:
        return list(config.label.classes)
    return ["0", "1"]


def _label(config: PipelineConfig, text) -> Optional[float]:
    """The label as the model's class index (or the regression value); None if it is not one of the task's."""
    if isinstance(text, bool):
        text = int(text)
    text = str(text).strip() if text is not None else ""
    if config.task == "regression":
        try:
            value = float(text)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    classes = label_values(config)
    if text in classes:
        return float(classes.index(text))
    if text.lower() in ("true", "false") and config.task == "binary" and not config.label.classes:
        return float(text.lower() == "true")
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number.is_integer() and 0 <= number < len(classes) else None


def _time_ms(value) -> Optional[float]:
    """Unix seconds or ISO 8601 (UTC unless it says otherwise), in milliseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) * 1000 if math.isfinite(value) else None
    text = str(value or "").strip()
    try:
        seconds = float(text)
        return seconds * 1000 if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    return moment.replace(tzinfo=moment.tzinfo or datetime.timezone.utc).timestamp() * 1000


def _records(path: str) -> Tuple[List[str], List[Tuple[int, dict]]]:
    """(columns, [(line number, row)]) of a CSV (with a header) or JSON lines file."""
    if not os.path.isfile(path):
        raise FeedbackError(f"{path}: no such feedback file; give a CSV or JSON lines file with the columns "
                            f"{', '.join(REQUIRED)}")
    if path.endswith(".csv"):
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            return columns, [(reader.line_num, row) for row in reader]
    if not path.endswith((".jsonl", ".json")):
        raise FeedbackError(f"{path}: not a .csv or .jsonl file; write the feedback as CSV with a header or as "
                            f"JSON lines, with the columns {', '.join(REQUIRED)}")
    rows, columns = [], {}
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                row = {"__malformed__": "not a JSON object"}
            columns.update(dict.fromkeys(row))
            rows.append((number, row))
    return [c for c in columns if c != "__malformed__"], rows


def read_feedback(config: PipelineConfig, path: str) -> List[dict]:
    """The feedback rows, checked: every malformed row is an error naming its line (nothing is joined)."""
    columns, rows = _records(path)
    missing = [c for c in REQUIRED if c not in columns]
    if rows and missing:
        raise FeedbackError(f"{path}: no column {', '.join(repr(c) for c in missing)} (it has "
                            f"{', '.join(columns) or 'none'}); feedback needs the columns {', '.join(REQUIRED)} "
                            f"(and optionally {ROW}, the example's index in a request of several)")
    if not rows:
        raise FeedbackError(f"{path}: no feedback rows; write one row per labelled request")
    checked, problems = [], []
    classes = label_values(config)
    for number, row in rows:
        if "__malformed__" in row:
            problems.append(f"line {number}: {row['__malformed__']}")
            continue
        identifier = str(row.get(ID) if row.get(ID) is not None else "").strip()
        label = _label(config, row.get(LABEL))
        when = _time_ms(row.get(TIME))
        index = str(row.get(ROW) if row.get(ROW) is not None else "0").strip() or "0"
        if not identifier:
            problems.append(f"line {number}: no {ID}")
        elif label is None:
            expected = ("a finite number" if classes is None
                        else f"one of the task's classes ({', '.join(classes)})")
            problems.append(f"line {number}: label {str(row.get(LABEL))!r} is not {expected}")
        elif when is None:
            problems.append(f"line {number}: time {str(row.get(TIME))!r} is neither Unix seconds nor ISO 8601")
        elif not index.isdigit():
            problems.append(f"line {number}: {ROW} {index!r} is not a row index (0, 1, ...)")
        else:
            checked.append({ID: identifier, ROW: int(index), LABEL: label, "label_time_ms": when, "line": number})
    if problems:
        more = f" (and {len(problems) - MAX_NAMED} more)" if len(problems) > MAX_NAMED else ""
        raise FeedbackError(f"{path}: {len(problems)} malformed row(s): {'; '.join(problems[:MAX_NAMED])}{more}; "
                            f"fix them and ingest the file again (nothing was joined)")
    return checked


class _Store:
    """The joined store of one model, held under its lock."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._lock = open(os.path.join(directory, LOCK), "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.keys, files = set(), set()
        index = os.path.join(directory, INDEX)
        if os.path.exists(index):
            with open(index) as handle:
                for line in handle:
                    if line.startswith("#file "):
                        files.add(line[6:].rstrip("\n"))
                    elif line.endswith("\n"):  # a line cut short by a crash is redone from its file below
                        identifier, row = line.rstrip("\n").rsplit("\t", 1)
                        self.keys.add((identifier, int(row)))
        for path in sorted(glob.glob(os.path.join(directory, "joined-*.jsonl"))):
            if os.path.basename(path) not in files:
                with open(path) as handle:
                    self._append_index(os.path.basename(path), [(r[ID], r[ROW]) for r in map(json.loads, handle)])

    def _append_index(self, name: str, keys: Sequence[Tuple[str, int]]) -> None:
        with open(os.path.join(self.directory, INDEX), "a") as handle:
            handle.write("".join(f"{identifier}\t{row}\n" for identifier, row in keys) + f"#file {name}\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.keys.update(keys)

    def write(self, prefix: str, records: List[dict]) -> str:
        name = f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}.jsonl"
        staging = os.path.join(self.directory, "." + name)
        with open(staging, "w") as handle:
            handle.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, os.path.join(self.directory, name))
        if prefix == "joined":
            self._append_index(name, [(r[ID], r[ROW]) for r in records])
        return os.path.join(self.directory, name)

    def close(self) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def _scores(column, row: int) -> List[float]:
    start, end = column.offsets[row], column.offsets[row + 1]
    return [float(v) for v in column.values[start:end]]


def ingest(config: PipelineConfig, path: str, source: Optional[str] = None) -> Ingest:
    """Joins the feedback in `path` to the request log (`source`, default the config's) exactly once."""
    from monitoring.monitor import request_log_dir

    feedback = read_feedback(config, path)
    source = source or request_log_dir(config)
    output = names.output_key(config)
    try:
        logged = request_log.read(source, config.name, {}, outputs=[output])
    except request_log.RequestLogError as error:
        raise FeedbackError(str(error)) from None
    if output not in logged.outputs:
        raise FeedbackError(f"{source}: the logged requests have no '{output}' output; log requests of a model "
                            f"exported for task {config.task}")
    where: Dict[Tuple[str, int], int] = {}
    for i, key in enumerate(zip(logged.ids.tolist(), logged.request_rows.tolist())):
        if key[0]:
            where.setdefault(key, i)  # a client that reuses an id: its first request is the one labelled
    # Out of order and duplicated: the earliest label of each key wins, whatever the order of the file.
    feedback.sort(key=lambda r: (r["label_time_ms"], r["line"]))
    store = _Store(store_dir(config))
    try:
        first: Dict[Tuple[str, int], dict] = {}
        chosen: Dict[Tuple[str, int], dict] = {}
        duplicates = conflicting = already = 0
        unmatched = []
        for row in feedback:
            key = (row[ID], row[ROW])
            if key in first:
                duplicates += 1
                conflicting += first[key][LABEL] != row[LABEL]
                continue
            first[key] = row
            if key in store.keys:
                already += 1
            elif key not in where:
                unmatched.append(row)
            else:
                chosen[key] = row
        records = []
        scores = logged.outputs[output]
        for key, row in chosen.items():
            i = where[key]
            records.append({ID: key[0], ROW: key[1], "model_version": int(logged.versions[i]),
                            "request_time_ms": float(logged.times_ms[i]), "scores": _scores(scores, i),
                            LABEL: row[LABEL], "label_time_ms": row["label_time_ms"]})
        records.sort(key=lambda r: r["request_time_ms"])
        joined_path = store.write("joined", records) if records else None
        classes = label_values(config)
        unmatched_path = store.write("unmatched", [
            {ID: r[ID], ROW: r[ROW], TIME: r["label_time_ms"] / 1000,
             LABEL: classes[int(r[LABEL])] if classes else r[LABEL]} for r in unmatched]) if unmatched else None
    finally:
        store.close()
    versions = np.array([r["model_version"] for r in records], np.int64)
    by_version = {int(v): int((versions == v).sum()) for v in np.unique(versions)}
    return Ingest(len(feedback), len(records), by_version, already, duplicates, conflicting, len(unmatched),
                  joined_path, unmatched_path, store.directory)


def read_joined(config: PipelineConfig) -> List[dict]:
    """Every joined example of the model, oldest request first."""
    records = []
    for path in sorted(glob.glob(os.path.join(store_dir(config), "joined-*.jsonl"))):
        with open(path) as handle:
            records.extend(json.loads(line) for line in handle if line.strip())
    records.sort(key=lambda r: r["request_time_ms"])
    return records


def summary(result: Ingest, path: str) -> str:
    versions = ", ".join(f"{v}: {n:,}" for v, n in sorted(result.by_version.items()))
    parts = [f"{result.rows:,} row{'s' if result.rows != 1 else ''} from {path}: {result.joined:,} joined"
             + (f" (by version {versions})" if versions else "")]
    if result.already_joined:
        parts.append(f"{result.already_joined:,} already joined by an earlier ingest")
    if result.duplicates:
        parts.append(f"{result.duplicates:,} duplicate(s) in the file (the earliest label kept; "
                     f"{result.conflicting:,} with another label)")
    if result.unknown:
        parts.append(f"{result.unknown:,} unknown id(s), not in the request log (not logged yet, not sampled or "
                     f"rotated away), kept in {result.unmatched_path} to ingest again later")
    return "; ".join(parts) + f"; joined store {result.store}"

"""Served requests as columns: the one place that knows the request log's format.

The server's log (`tfxline serve --request_log_dir`, serving/request_log.py) is a directory of TFRecord
files of tf.Examples, `<model>.requests.tfrecord` being written and rotated ones with a millisecond
suffix; each example holds the raw features, `model_version`, `request_time_ms`, `request_id` and
`request_row` (logs written before request ids lack the two: their rows have no id) and the outputs. A CSV
file or JSON lines of requests (one object of raw features per line, optionally with the same fields) are
read too."""
import csv
import dataclasses
import glob
import json
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from monitoring import examples, table, tfrecord
from serving.request_log import FILE_SUFFIX, ID_FEATURE, ROW_FEATURE, TIME_FEATURE, VERSION_FEATURE

# A reader may meet the last record of the file being written half-written; it waits this long for
# the writer to finish it before calling the file truncated.
LIVE_FILE_GRACE_SECONDS = 0.5
ROTATION_RETRIES = 5


class RequestLogError(ValueError):
    """The requests cannot be read; the message names the problem and what to do."""


@dataclasses.dataclass
class Requests:
    columns: Dict[str, table.Column]  # the config's features
    versions: np.ndarray              # int64 per row (-1: unknown)
    times_ms: np.ndarray              # float64 per row (NaN: unknown)
    source: str
    ids: np.ndarray = None            # object (str) per row: the request's id ("": unknown)
    request_rows: np.ndarray = None   # int64 per row: the example's index in its request (-1: unknown)
    outputs: Dict[str, table.Column] = dataclasses.field(default_factory=dict)  # the model's, when asked for

    @property
    def num_rows(self) -> int:
        return len(self.versions)

    def take(self, rows: np.ndarray) -> Dict[str, table.Column]:
        return {name: column.take(rows) for name, column in self.columns.items()}


def log_files(directory: str, model: str) -> List[str]:
    """The model's log files, oldest first: rotated ones by their suffix, then the one being written."""
    current = os.path.join(directory, model + FILE_SUFFIX)
    rotated = glob.glob(glob.escape(current) + ".*")
    rotated = sorted((f for f in rotated if f.rsplit(".", 1)[1].isdigit()), key=lambda f: int(f.rsplit(".", 1)[1]))
    return rotated + ([current] if os.path.exists(current) else [])


def _read_tfrecords(files: List[str], features: Dict[str, str], source: str, outputs: Sequence[str] = ()
                    ) -> "Requests":
    names = list(features) + META + list(outputs)
    kinds = {**features, **META_KINDS, **{name: "numeric" for name in outputs}}
    try:
        columns, rows = examples.read_tfrecords(files, names, kinds)
    except tfrecord.RecordError as error:
        if not (files[-1].endswith(FILE_SUFFIX) and str(error).startswith(files[-1])):
            raise RequestLogError(str(error)) from None
        time.sleep(LIVE_FILE_GRACE_SECONDS)  # the server may have been writing the last record
        try:
            columns, rows = examples.read_tfrecords(files, names, kinds)
        except tfrecord.RecordError as again:
            raise RequestLogError(str(again)) from None
    return _requests(columns, rows, source, outputs)


META = [VERSION_FEATURE, TIME_FEATURE, ID_FEATURE, ROW_FEATURE]
META_KINDS = {VERSION_FEATURE: "categorical_int", TIME_FEATURE: "categorical_int", ID_FEATURE: "categorical_string",
              ROW_FEATURE: "categorical_int"}


def _requests(columns: Dict[str, table.Column], rows: int, source: str, outputs: Sequence[str] = ()
              ) -> "Requests":
    output_columns = {name: columns.pop(name) for name in outputs if name in columns}
    versions = _meta(columns, VERSION_FEATURE, rows, -1)
    times = _meta(columns, TIME_FEATURE, rows, np.nan)
    ids = _ids(columns.pop(ID_FEATURE, None), rows)
    request_rows = _meta(columns, ROW_FEATURE, rows, -1)
    return Requests(columns, versions, times, source, ids, np.where(ids != "", np.maximum(request_rows, 0), -1),
                    output_columns)


def _ids(column: Optional[table.Column], rows: int) -> np.ndarray:
    result = np.full(rows, "", object)
    if column is None or not len(column.values):
        return result
    present = ~column.null & (np.diff(column.offsets) > 0)
    result[present] = column.strings()[column.offsets[:-1][present]]
    return result


def _meta(columns: Dict[str, table.Column], name: str, rows: int, fill) -> np.ndarray:
    column = columns.pop(name, None)
    result = np.full(rows, fill, np.float64 if isinstance(fill, float) else np.int64)
    if column is None or not len(column.values) or column.dtype == table.STRING:
        return result
    present = ~column.null & (np.diff(column.offsets) > 0)
    result[present] = column.values[column.offsets[:-1][present]]
    return result


def _from_rows(rows: List[dict], features: Sequence[str], source: str) -> Requests:
    return _requests(table.from_rows(rows, list(features) + META), len(rows), source)


def _read_rows(path: str) -> List[dict]:
    if path.endswith(".csv"):
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    rows = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise RequestLogError(f"{path}: line {number} is not JSON ({error.msg}); write one JSON object of "
                                      f"raw features per line") from None
            if not isinstance(row, dict):
                raise RequestLogError(f"{path}: line {number} is not a JSON object of raw features")
            rows.append(row)
    return rows


def read(source: str, model: str, features: Dict[str, str], outputs: Sequence[str] = ()) -> Requests:
    """The requests in `source` (the features: name -> config kind): a request log directory (the model's
    files in it), one TFRecord file, a CSV file or a JSON lines file (.jsonl, .json). `outputs`: the model's
    outputs to read too (request logs only)."""
    if os.path.isdir(source):
        for attempt in range(ROTATION_RETRIES):
            files = log_files(source, model)
            if not files:
                raise RequestLogError(f"no request log of model '{model}' in {source} (no {model}{FILE_SUFFIX}*); "
                                      f"start the server with --request_log_dir={source}, or pass --requests FILE")
            try:
                requests = _read_tfrecords(files, features, source, outputs)
                break
            except FileNotFoundError:  # the server rotated a file while it was listed: list again
                if attempt == ROTATION_RETRIES - 1:
                    raise
    elif not os.path.exists(source):
        raise RequestLogError(f"{source}: no such request log directory or file; start the server with "
                              f"--request_log_dir, or pass --requests FILE (.csv, .jsonl or .tfrecord)")
    elif source.endswith((".csv", ".jsonl", ".json")):
        requests = _from_rows(_read_rows(source), features, source)
    else:
        requests = _read_tfrecords([source], features, source, outputs)
    if not requests.num_rows:
        raise RequestLogError(f"{source}: the request log is empty (no requests logged yet); send traffic to a "
                              f"server with --request_log_dir and a --request_log_sample_rate above 0, then retry")
    return requests


def assign_version(requests: Requests, version: Optional[int]) -> Requests:
    """Rows without a model version get `version`; without one, such rows are an error."""
    unknown = requests.versions < 0
    if unknown.any():
        if version is None:
            raise RequestLogError(f"{requests.source}: {int(unknown.sum()):,} requests have no {VERSION_FEATURE}; "
                                  f"add the column, or pass --model-version V for the version that served them")
        requests.versions = np.where(unknown, version, requests.versions)
    return requests

"""`tfxline data simulate`: a new span written from existing data with controlled shifts, so drift and its
detection can be shown and tested end to end. The same inputs and seed give the same file, byte for byte.

Shifts, applied in this order, each on rows drawn at random with the seed:
  --label-threshold T            the label rule's threshold becomes T (the label column is rewritten so that
                                 the config's rule gives what the new rule would: concept drift)
  --scale FEATURE=FACTOR[@SHARE] numeric values times FACTOR, in SHARE of the rows (default all)
  --offset FEATURE=DELTA[@SHARE] numeric values plus DELTA, in SHARE of the rows
  --move-share FEATURE=VALUE:POINTS  the share of VALUE up (or down) by POINTS percentage points
  --new-category FEATURE=VALUE:SHARE a value not in the data, in SHARE of the rows
  --missing FEATURE=SHARE        missing values raised to SHARE of the rows"""
import csv
import dataclasses
import glob
import io
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from config import PipelineConfig, spans


class SimulateError(ValueError):
    """A shift or source that cannot be applied; the message says which and why."""


@dataclasses.dataclass
class Shifts:
    scale: Sequence[str] = ()
    offset: Sequence[str] = ()
    move_share: Sequence[str] = ()
    new_category: Sequence[str] = ()
    missing: Sequence[str] = ()
    label_threshold: Optional[float] = None


def _split(flag: str, text: str, separator: str) -> Tuple[str, str]:
    feature, equals, value = text.partition("=")
    if not equals or not feature or not value:
        raise SimulateError(f"--{flag} {text!r}: write FEATURE={separator.join(['VALUE', 'SIZE'])}" if separator
                            else f"--{flag} {text!r}: write FEATURE=SIZE")
    return feature, value


def _number(flag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SimulateError(f"--{flag}: {text!r} is not a number") from None


def _share(flag: str, text: str) -> float:
    share = _number(flag, text)
    if not 0 <= share <= 1:
        raise SimulateError(f"--{flag}: share {share:g} must be between 0 and 1")
    return share


def _read(files: List[str]) -> Tuple[List[str], List[List[str]]]:
    header, rows = None, []
    for path in files:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            file_header = next(reader, None)
            if file_header is None:
                raise SimulateError(f"{path}: the file is empty")
            if header is not None and file_header != header:
                raise SimulateError(f"{path}: its columns differ from {files[0]}'s")
            header = file_header
            rows.extend(row for row in reader if row)
    if not rows:
        raise SimulateError(f"{', '.join(files)}: no data rows to simulate from")
    return header, rows


def _format(value: float, integer: bool) -> str:
    return str(int(round(value))) if integer else repr(round(float(value), 6))


def _is_integer_column(cells: List[str]) -> bool:
    try:
        return all(float(c) == int(c) for c in cells if c)
    except ValueError:
        return False


class _Data:
    def __init__(self, header: List[str], rows: List[List[str]], rng: np.random.Generator):
        self.header, self.rows, self.rng = header, rows, rng

    def index(self, feature: str, flag: str) -> int:
        if feature not in self.header:
            raise SimulateError(f"--{flag}: '{feature}' is not a column of the data ({', '.join(self.header)})")
        return self.header.index(feature)

    def cells(self, column: int) -> List[str]:
        return [row[column] for row in self.rows]

    def pick(self, candidates: Sequence[int], count: int) -> np.ndarray:
        return np.sort(self.rng.choice(np.asarray(candidates, np.int64), size=count, replace=False)) \
            if count else np.zeros(0, np.int64)

    def numeric(self, feature: str, flag: str, operation, size: float, share: float) -> None:
        column = self.index(feature, flag)
        cells = self.cells(column)
        try:
            values = [float(c) if c else None for c in cells]
        except ValueError:
            raise SimulateError(f"--{flag}: '{feature}' is not numeric") from None
        integer = _is_integer_column(cells)
        present = [i for i, v in enumerate(values) if v is not None]
        for i in self.pick(present, int(round(share * len(present)))):
            self.rows[i][column] = _format(operation(values[i], size), integer)


def _label(data: _Data, config: PipelineConfig, threshold: float) -> None:
    label = config.label
    if label.rule == "none":
        raise SimulateError("--label-threshold: the config's label has no rule (label.rule: none) to change")
    column = data.index(label.column, "label-threshold")
    of = data.index(label.of_column, "label-threshold") if label.rule == "fraction_of_column_above" else None
    integer = _is_integer_column(data.cells(column))
    for row in data.rows:
        if not row[column]:
            continue
        value = float(row[column])
        base = 1.0
        if of is not None:
            if not row[of]:
                continue
            base = float(row[of])
        old, new = value > label.threshold * base, value > threshold * base
        if old == new:
            continue
        # Clearly on the side of the config's cut that the new rule puts the row (a value on the cut itself
        # could fall either way once rounded, or in float32 as the model's graph computes the label).
        boundary = label.threshold * base
        margin = max(abs(boundary) * 1e-3, 0.01)
        row[column] = _format(boundary + margin if new else boundary - margin, integer)


def _move_share(data: _Data, text: str) -> None:
    feature, rest = _split("move-share", text, ":")
    value, _, points = rest.rpartition(":")
    if not value:
        raise SimulateError(f"--move-share {text!r}: write FEATURE=VALUE:POINTS, e.g. payment_type=Cash:+5")
    column = data.index(feature, "move-share")
    cells = data.cells(column)
    total = len(cells)
    count = int(round(abs(_number("move-share", points)) / 100 * total))
    holders = [i for i, c in enumerate(cells) if c == value]
    others = [i for i, c in enumerate(cells) if c and c != value]
    if _number("move-share", points) >= 0:
        if count > len(others):
            raise SimulateError(f"--move-share {text!r}: only {len(others)} rows have another value")
        for i in data.pick(others, count):
            data.rows[i][column] = value
    else:
        if count > len(holders):
            raise SimulateError(f"--move-share {text!r}: only {len(holders)} rows have '{value}'")
        pool = [cells[i] for i in others]
        if not pool:
            raise SimulateError(f"--move-share {text!r}: no other value to move the rows to")
        for i in data.pick(holders, count):
            data.rows[i][column] = pool[int(data.rng.integers(len(pool)))]


def _new_category(data: _Data, text: str) -> None:
    feature, rest = _split("new-category", text, ":")
    value, _, share = rest.rpartition(":")
    if not value:
        raise SimulateError(f"--new-category {text!r}: write FEATURE=VALUE:SHARE, e.g. payment_type=Bitcoin:0.05")
    column = data.index(feature, "new-category")
    if value in data.cells(column):
        raise SimulateError(f"--new-category: '{value}' is already a value of '{feature}'; use --move-share")
    for i in data.pick(range(len(data.rows)), int(round(_share("new-category", share) * len(data.rows)))):
        data.rows[i][column] = value


def _missing(data: _Data, text: str) -> None:
    feature, share = _split("missing", text, "")
    column = data.index(feature, "missing")
    cells = data.cells(column)
    present = [i for i, c in enumerate(cells) if c]
    target = int(round(_share("missing", share) * len(cells)))
    for i in data.pick(present, max(0, target - (len(cells) - len(present)))):
        data.rows[i][column] = ""


def source_files(config: PipelineConfig, source: Optional[str]) -> List[str]:
    if source is None:
        files = spans.input_files(config)
        if not files:
            raise SimulateError(f"no data to simulate from in {config.data.path}; pass --source FILE_OR_DIR")
        return files
    if os.path.isdir(source):
        files = sorted(glob.glob(os.path.join(source, "*.csv")))
        if not files:
            raise SimulateError(f"--source {source}: no CSV files in the directory")
        return files
    if not os.path.isfile(source):
        raise SimulateError(f"--source {source}: no such file or directory")
    return [source]


def output_path(config: PipelineConfig, output: Optional[str], span: Optional[int]) -> Tuple[str, Optional[int]]:
    if output:
        return output, span
    if not config.data.span_pattern:
        raise SimulateError("the config has no data.span_pattern to place a new span; pass --output FILE.csv")
    if span is None:
        existing = spans.spans(config)
        span = max(existing) + 1 if existing else 1
    try:
        return spans.span_path(config, span), span
    except ValueError as error:
        raise SimulateError(str(error)) from None


def simulate(config: PipelineConfig, shifts: Shifts, output: str, files: List[str], seed: int = 0,
             rows: Optional[int] = None) -> Tuple[int, List[str]]:
    """Writes the shifted rows to `output`; returns the row count and a description of each shift."""
    if os.path.exists(output):
        raise SimulateError(f"{output} exists; simulate writes new spans only (remove it or pick another span)")
    header, source_rows = _read(files)
    rng = np.random.default_rng(seed)
    if rows is not None:
        source_rows = [source_rows[i] for i in rng.integers(0, len(source_rows), rows)]
    data = _Data(header, [list(row) for row in source_rows], rng)
    done = []
    if shifts.label_threshold is not None:
        _label(data, config, shifts.label_threshold)
        done.append(f"label threshold {config.label.threshold:g} -> {shifts.label_threshold:g}")
    for flag, texts, operation in (("scale", shifts.scale, lambda v, s: v * s),
                                   ("offset", shifts.offset, lambda v, s: v + s)):
        for text in texts:
            feature, rest = _split(flag, text, "")
            size, _, share = rest.partition("@")
            share_value = _share(flag, share) if share else 1.0
            data.numeric(feature, flag, operation, _number(flag, size), share_value)
            done.append(f"{feature} {'x' if flag == 'scale' else '+'}{size} in {100 * share_value:g}% of rows")
    for text in shifts.move_share:
        _move_share(data, text)
        done.append(f"share of {text}")
    for text in shifts.new_category:
        _new_category(data, text)
        done.append(f"new value {text}")
    for text in shifts.missing:
        _missing(data, text)
        done.append(f"missing {text}")
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(data.rows)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    temporary = f"{output}.tmp{os.getpid()}"
    with open(temporary, "w", newline="") as handle:
        handle.write(buffer.getvalue())
    os.replace(temporary, output)
    return len(data.rows), done

"""Cheap checks of the input CSV files before any TFX work: problems that would otherwise
surface as a Beam stack trace deep inside CsvExampleGen."""
import csv

from config import PipelineConfig
from config.spans import input_files


class DataError(ValueError):
    """The input data cannot be read as the config describes; the message says what to fix."""


ZERO_ONE = {"0", "1", "0.0", "1.0"}


def _is_zero_one_label(config: PipelineConfig) -> bool:
    return config.task == "binary" and config.label.rule == "none" and not config.label.classes


def check_csv_files(config: PipelineConfig) -> int:
    """Returns the number of data rows; raises DataError naming the file, line and problem."""
    files = input_files(config)
    if not files:
        which = f" for span {config.data.span}" if config.data.span is not None else ""
        raise DataError(f"no CSV files match '{config.data.span_pattern or '*.csv'}'{which} in {config.data.path}")
    required = config.feature_names + [config.label.column]
    rows = 0
    for path in files:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise DataError(f"{path}: the file is empty; it needs a header line and data rows")
            missing = [name for name in required if name not in header]
            if missing:
                raise DataError(f"{path}: column(s) {missing} missing from the header; the config's "
                                f"features and label.column must all be columns")
            label = header.index(config.label.column) if _is_zero_one_label(config) else None
            file_rows = 0
            for line_number, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise DataError(f"{path}: line {line_number} has {len(row)} fields, the header has "
                                    f"{len(header)}; fix or remove the malformed row")
                if label is not None and row[label].strip() not in ZERO_ONE:
                    raise DataError(f"{path}: line {line_number}: label column '{config.label.column}' is "
                                    f"{row[label]!r}; task 'binary' without a rule or classes needs 0 or 1 "
                                    f"(or set label.rule, or label.classes with the 2 class names)")
                file_rows += 1
            if file_rows == 0:
                raise DataError(f"{path}: the file has a header but no data rows")
            rows += file_rows
    return rows

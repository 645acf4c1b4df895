"""Columns of examples as numpy arrays, from Arrow arrays (tfx_bsl's decoding of tf.Examples, see
monitoring/examples.py) or from plain rows (CSV, JSON lines)."""
import dataclasses
from typing import Dict, Iterable, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INT, FLOAT, STRING = "INT", "FLOAT", "STRING"


@dataclasses.dataclass
class Column:
    """One feature: the flat values of all rows, where each row's values start (`offsets`) and which rows
    lack the feature (`null`). A row with an empty list is present with no values, as in TFDV."""
    dtype: str                     # INT, FLOAT or STRING: the tf.Example list type
    values: np.ndarray             # INT int64, FLOAT float64 (from float32), STRING int32 codes into `labels`
    offsets: np.ndarray            # int64, len(rows) + 1
    null: np.ndarray               # bool per row
    labels: Optional[np.ndarray] = None  # STRING: object array of str

    @property
    def num_rows(self) -> int:
        return len(self.null)

    def take(self, rows: np.ndarray) -> "Column":
        """The column of the given row indices (sorted)."""
        counts = np.diff(self.offsets)[rows]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        if len(counts) and (counts == 1).all() and np.array_equal(self.offsets, np.arange(self.num_rows + 1)):
            values = self.values[rows]
        else:
            starts = self.offsets[:-1][rows]
            index = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
            values = self.values[index]
        return Column(self.dtype, values, offsets, self.null[rows], self.labels)

    def row_values(self) -> np.ndarray:
        """Values per row counts, for the rows that are present."""
        return np.diff(self.offsets)[~self.null]

    def strings(self) -> np.ndarray:
        """Every value as text (the label of a categorical), for categorical statistics."""
        if self.dtype == STRING:
            return self.labels[self.values] if len(self.values) else np.array([], object)
        if self.dtype == INT:
            return self.values.astype(str).astype(object)
        # A categorical id sent as a JSON number (3.0) is the category "3".
        return np.array([str(int(v)) if float(v).is_integer() else repr(float(v)) for v in self.values], object)


def empty_column(num_rows: int) -> Column:
    return Column(FLOAT, np.zeros(0), np.zeros(num_rows + 1, np.int64), np.ones(num_rows, bool))


def from_arrow(array) -> Column:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    null = np.asarray(array.is_null().to_numpy(zero_copy_only=False), bool)
    offsets = np.asarray(array.offsets.to_numpy(), np.int64)
    flat = array.flatten()
    kind = flat.type
    if pa.types.is_integer(kind):
        return Column(INT, np.asarray(flat.to_numpy(), np.int64), offsets - offsets[0], null)
    if pa.types.is_floating(kind):
        # float32 in tf.Examples; float64 here so that means and sums are exact enough, as TFDV's.
        return Column(FLOAT, np.asarray(flat.to_numpy(), np.float32).astype(np.float64), offsets - offsets[0],
                      null)
    if pa.types.is_null(kind):
        return Column(FLOAT, np.zeros(0), offsets - offsets[0], null)
    encoded = pc.dictionary_encode(flat)
    labels = np.array([value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                       for value in encoded.dictionary.to_pylist()], object)
    return Column(STRING, np.asarray(encoded.indices.to_numpy(), np.int32), offsets - offsets[0], null, labels)


def from_rows(rows: List[dict], names: Iterable[str]) -> Dict[str, Column]:
    """Plain rows (from CSV or JSON) to columns: None or "" is a missing value; a column whose values all
    read as integers is INT, as numbers FLOAT, else STRING (CsvExampleGen's inference)."""
    result = {}
    for name in names:
        cells = [row.get(name) for row in rows]
        null = np.array([cell is None or cell == "" for cell in cells], bool)
        present = [cell for cell, missing in zip(cells, null) if not missing]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(~null, out=offsets[1:])
        if present:
            dtype, values, labels = _typed(present)
            result[name] = Column(dtype, values, offsets, null, labels)
        else:
            result[name] = empty_column(len(rows))
    return result


def _typed(cells: list):
    def parse(cast):
        try:
            return [cast(cell) for cell in cells]
        except (TypeError, ValueError):
            return None

    ints = parse(lambda c: c if isinstance(c, int) and not isinstance(c, bool) else int(str(c)))
    if ints is not None and all(not isinstance(c, float) for c in cells):
        return INT, np.array(ints, np.int64), None
    floats = parse(float)
    if floats is not None and all(not isinstance(c, str) or c.strip() for c in cells):
        return FLOAT, np.array(floats, np.float32).astype(np.float64), None
    uniques, codes = np.unique(np.array([str(c) for c in cells], dtype=object).astype(str), return_inverse=True)
    return STRING, codes.astype(np.int32), uniques.astype(object)

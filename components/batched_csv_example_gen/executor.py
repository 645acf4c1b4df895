"""CSV files to tf.Examples a batch of rows at a time: Python's csv reader, Arrow columns and
tfx_bsl's C++ encoder, instead of TFX's CsvExampleGen building one tf.Example proto per row in
Python (42.7 s of CsvExampleGen's time on 150k taxi rows).

The output is CsvExampleGen's: column types inferred over the whole split the same way (a column
with an integer outside int64 is a string column), an empty cell is an empty value list and a
column with no values at all an empty feature, and every example is the deterministic
serialization of CsvExampleGen's, so the hash-bucket splits are the same too."""
import csv
import io
import itertools
import os
from typing import Any, Dict, Iterable, Iterator, List

import apache_beam as beam
import numpy as np
import pyarrow as pa
from tensorflow.core.example import example_pb2
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx_bsl.coders.csv_decoder import ColumnType
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

ROWS_PER_BATCH = 10_000
_INT64 = np.iinfo(np.int64)
_ARROW_TYPES = {
    ColumnType.UNKNOWN: pa.large_list(pa.int64()),  # all nulls: encoded as features with no values list
    ColumnType.INT: pa.large_list(pa.int64()),
    ColumnType.FLOAT: pa.large_list(pa.float32()),
    ColumnType.STRING: pa.large_list(pa.large_binary()),
}


def cell_type(cell: bytes) -> ColumnType:
    """The type of one cell, by the rules of tfx_bsl's CSV type inference (CsvExampleGen's)."""
    if not cell:
        return ColumnType.UNKNOWN
    try:
        return ColumnType.INT if _INT64.min <= int(cell) <= _INT64.max else ColumnType.STRING
    except ValueError:
        try:
            float(cell)
        except ValueError:
            return ColumnType.STRING
        return ColumnType.FLOAT


def column_type(cells: Iterable[str]) -> ColumnType:
    """The narrowest type that holds every cell of a column."""
    result = ColumnType.UNKNOWN
    for cell in set(cells):
        result = max(result, cell_type(cell.encode()))
        if result == ColumnType.STRING:
            break
    return result


def _row_batches(path: str, width: int) -> Iterator[List[List[str]]]:
    """The data rows of a CSV file (header skipped, blank lines dropped), a batch at a time."""
    with beam.io.filesystems.FileSystems.open(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        text.readline()
        rows = (row for row in csv.reader(text) if row)
        while True:
            batch = list(itertools.islice(rows, ROWS_PER_BATCH))
            if not batch:
                return
            for row in batch:
                if len(row) != width:
                    raise ValueError(f"Invalid CSV line in {path}: {row}")
            yield batch


def file_column_types(path: str, column_names: List[str]) -> List[ColumnType]:
    types = [ColumnType.UNKNOWN] * len(column_names)
    for batch in _row_batches(path, len(column_names)):
        types = [max(known, column_type(cells)) if known != ColumnType.STRING else known
                 for known, cells in zip(types, zip(*batch))]
    return types


def merge_column_types(per_file: Iterable[List[ColumnType]]) -> List[ColumnType]:
    return [max(types) for types in zip(*per_file)]


def _column_array(cells, kind: ColumnType) -> pa.Array:
    """One value per non-empty cell, none for an empty one (null for a column with no values)."""
    if kind == ColumnType.UNKNOWN:
        return pa.nulls(len(cells), _ARROW_TYPES[kind])
    present = np.fromiter((cell != "" for cell in cells), dtype=bool, count=len(cells))
    offsets = np.concatenate([[0], np.cumsum(present, dtype=np.int64)])
    convert = {ColumnType.INT: int, ColumnType.FLOAT: float, ColumnType.STRING: str.encode}[kind]
    values = pa.array([convert(cell) for cell in cells if cell], _ARROW_TYPES[kind].value_type)
    return pa.LargeListArray.from_arrays(pa.array(offsets), values)


def file_examples(path: str, column_names: List[str], column_types: List[ColumnType]) -> Iterator[bytes]:
    encoder = RecordBatchToExamplesEncoder()
    parse = example_pb2.Example.FromString
    for batch in _row_batches(path, len(column_names)):
        arrays = [_column_array(cells, kind) for cells, kind in zip(zip(*batch), column_types)]
        for record in encoder.encode(pa.RecordBatch.from_arrays(arrays, column_names)):
            # The C++ encoder writes features in hash order; CsvExampleGen hashes the
            # deterministic (sorted) serialization to pick each example's split.
            yield parse(record).SerializeToString(deterministic=True)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _CsvToSerializedExamples(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                             split_pattern: str) -> beam.PCollection:
    """Serialized tf.Examples of the CSV files matching one input split's pattern."""
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    files = fileio.glob(pattern)
    if not files:
        raise RuntimeError(f"Split pattern {pattern} does not match any files.")
    column_names = io_utils.load_csv_column_names(files[0])
    if any(io_utils.load_csv_column_names(path) != column_names for path in files[1:]):
        raise RuntimeError(f"Files in same split {pattern} have different header.")
    paths = pipeline | "CsvFiles" >> beam.Create(files)
    column_types = beam.pvalue.AsSingleton(
        paths
        | "ColumnTypesPerFile" >> beam.Map(file_column_types, column_names)
        | "ColumnTypes" >> beam.CombineGlobally(merge_column_types))
    return paths | "ToExamples" >> beam.FlatMap(file_examples, column_names, column_types)


class Executor(BaseExampleGenExecutor):
    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _CsvToSerializedExamples

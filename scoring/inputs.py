"""What a scoring job reads: CSV files with a header, or TFRecord files of tf.Examples (the
pipeline's Examples, or the request log `tfxline serve --request_log_dir` writes), turned into
chunks of rows in the model's raw-feature columns.

A CSV file is planned into byte ranges of `batch_size` lines (so workers share one big file) and
each range is parsed by pyarrow in C++. Rows of a range that pyarrow cannot take as typed (a wrong
field count, a value of the wrong type, a non-finite number) send that range through Python's csv
module row by row, which finds the rejected rows and says why. Ranges end at line ends: a quoted
field with a line break inside is not supported and comes out as rejected rows, never lost."""
import base64
import csv
import dataclasses
import io
import os
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from scoring.model import ScoringError
from serving.edge.runtime import BadInput, to_columns

CSV, TFRECORD = "csv", "tfrecord"
KEY_COLUMNS = ("source", "row")  # the join key when no id columns are given
NUMPY_DTYPES = {"float32": np.float32, "int64": np.int64, "string": object}


@dataclasses.dataclass(frozen=True)
class InputFile:
    path: str
    source: str  # the path relative to the input, as written in the output's `source` column
    kind: str
    compression: str = ""  # TFRecord: "" or "GZIP"
    header: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Range:
    file: InputFile
    start: int = 0
    length: int = -1  # -1: to the end of the file
    first_row: int = 0


@dataclasses.dataclass
class Chunk:
    """Rows of one source in the model's columns, with their row numbers, id values and the
    rows of the same range that were rejected."""
    source: str
    rows: np.ndarray
    ids: Dict[str, np.ndarray]
    features: Dict[str, np.ndarray]
    rejects: List[dict]

    @property
    def size(self) -> int:
        return len(self.rows)


def _kind(path: str) -> Optional[Tuple[str, str]]:
    name = os.path.basename(path)
    if name.endswith(".csv"):
        return CSV, ""
    if "tfrecord" in name:  # data_tfrecord-00000-of-00001.gz, taxi.requests.tfrecord.1796...
        return TFRECORD, "GZIP" if name.endswith(".gz") else ""
    return None


def list_files(input_path: str) -> List[InputFile]:
    """The input's files: a file, a directory (its files, not hidden ones), or a glob."""
    from apache_beam.io.filesystems import FileSystems

    if os.path.isdir(input_path):
        base, pattern = input_path, os.path.join(input_path, "*")
    else:
        base, pattern = os.path.dirname(input_path), input_path
    try:
        matched = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception as error:  # Beam raises BeamIOError for an unreadable pattern
        raise ScoringError(f"{input_path}: cannot list the input ({error})") from None
    matched = [path for path in matched if not os.path.basename(path).startswith((".", "_"))
               and not os.path.isdir(path)]
    if not matched:
        raise ScoringError(f"{input_path}: no input files; pass a CSV file, a directory of them, "
                           "or TFRecord files of tf.Examples")
    files = []
    for path in matched:
        kind = _kind(path)
        if kind is None:
            raise ScoringError(f"{path}: not a .csv or TFRecord (*tfrecord*) file; move it out of the input "
                               "or pass a glob that leaves it out")
        source = os.path.relpath(path, base) if base and not path.startswith(("gs://", "s3://")) else path
        files.append(InputFile(path, source, *kind))
    return files


def _read_header(path: str) -> Tuple[str, ...]:
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        line = handle.readline()
    try:
        text = line.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ScoringError(f"{path}: the header is not UTF-8 text") from None
    return tuple(next(csv.reader([text]), []))


def check(files: List[InputFile], inputs: List[dict], id_columns: Sequence[str]) -> List[InputFile]:
    """Reads each CSV header; a header without a model feature or an id column stops the job
    before anything runs (every row would be rejected)."""
    names = [item["name"] for item in inputs]
    checked = []
    for item in files:
        if item.kind == CSV:
            header = _read_header(item.path)
            missing = [name for name in [*names, *id_columns] if name not in header]
            if missing:
                raise ScoringError(f"{item.path}: the header lacks {missing}; the model takes {names}"
                                   + (f" and the id columns are {list(id_columns)}" if id_columns else ""))
            item = dataclasses.replace(item, header=header)
        checked.append(item)
    return checked


def plan(item: InputFile, rows_per_chunk: int, block_bytes: int = 1 << 22) -> Iterator[Range]:
    """CSV: ranges of `rows_per_chunk` lines with the row number each starts at (one pass of
    newline counting); TFRecord: the whole file."""
    if item.kind != CSV:
        yield Range(item)
        return
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.open(item.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        offset = len(handle.readline())
        start, row, pending = offset, 0, 0
        while True:
            block = handle.read(block_bytes)
            if not block:
                break
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == ord("\n"))
            for end in ends[rows_per_chunk - pending - 1::rows_per_chunk]:
                stop = offset + int(end) + 1
                yield Range(item, start, stop - start, row)
                start, row = stop, row + rows_per_chunk
            pending = (pending + len(ends)) % rows_per_chunk
            offset += len(block)
        if offset > start:
            yield Range(item, start, offset - start, row)


def read(part: Range, inputs: List[dict], id_columns: Sequence[str], batch_size: int) -> Iterator[Chunk]:
    if part.file.kind == CSV:
        yield _read_csv(part, inputs, id_columns)
    else:
        yield from _read_tfrecord(part.file, inputs, id_columns, batch_size)


# ---- CSV --------------------------------------------------------------------------------------

def _range_bytes(part: Range) -> bytes:
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.open(part.file.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.seek(part.start)
        return handle.read() if part.length < 0 else handle.read(part.length)


def _read_csv(part: Range, inputs: List[dict], id_columns: Sequence[str]) -> Chunk:
    data = _range_bytes(part)
    return _typed_csv(data, part, inputs, id_columns) or _rows_csv(data, part, inputs, id_columns)


def _typed_csv(data: bytes, part: Range, inputs, id_columns) -> Optional[Chunk]:
    """pyarrow's typed parse; None when any row of the range needs a closer look."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    arrow_types = {"float32": pa.float32(), "int64": pa.int64(), "string": pa.string()}
    types = {item["name"]: arrow_types[item["dtype"]] for item in inputs}
    for name in id_columns:
        types.setdefault(name, pa.string())
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    invalid = []
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(column_names=list(part.file.header), use_threads=False,
                                            block_size=max(len(data) + 1, 1 << 16)),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=lambda row: invalid.append(row) or "skip"),
            convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=list(types),
                                                  null_values=[""], strings_can_be_null=True))
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if invalid or table.num_rows != lines:  # blank lines are skipped by pyarrow: number rows in Python
        return None
    features = {}
    for item in inputs:
        column = table.column(item["name"]).fill_null(item["default"])
        values = column.combine_chunks().to_numpy(zero_copy_only=False)
        if item["dtype"] == "float32" and not np.isfinite(values).all():
            return None
        features[item["name"]] = values
    ids = {name: table.column(name).cast(pa.string()).fill_null("").combine_chunks().to_numpy(zero_copy_only=False)
           for name in id_columns}
    rows = np.arange(part.first_row, part.first_row + lines, dtype=np.int64)
    return Chunk(part.file.source, rows, ids, features, [])


def _rows_csv(data: bytes, part: Range, inputs, id_columns) -> Chunk:
    """Row by row: each row is converted as the edge runtime converts one (same missing values,
    same messages), and a row that does not fit is rejected with the reason."""
    header = part.file.header
    position = {name: index for index, name in enumerate(header)}
    names = [item["name"] for item in inputs]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    rows, ids, good, rejects = [], {name: [] for name in id_columns}, [], []
    for offset, raw in enumerate(lines):
        row = part.first_row + offset
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
            fields = next(csv.reader([text]))
            if len(fields) != len(header):
                raise BadInput(f"{len(fields)} fields where the header has {len(header)}")
            columns = to_columns([{name: fields[position[name]] for name in names}], inputs)
            for item in inputs:
                if item["dtype"] == "float32" and not np.isfinite(columns[item["name"]]).all():
                    raise BadInput(f"feature '{item['name']}': {fields[position[item['name']]]!r} is not a "
                                   "finite number")
        except (BadInput, csv.Error, UnicodeDecodeError) as error:
            rejects.append({"source": part.file.source, "row": row, "reason": _reason(error),
                            "line": raw.decode("utf-8", errors="backslashreplace")})
            continue
        rows.append(row)
        good.append(columns)
        for name in id_columns:
            ids[name].append(fields[position[name]])
    features = {item["name"]: (np.concatenate([g[item["name"]] for g in good]) if good
                               else np.array([], dtype=NUMPY_DTYPES[item["dtype"]])) for item in inputs}
    return Chunk(part.file.source, np.array(rows, dtype=np.int64),
                 {name: np.array(values, dtype=object) for name, values in ids.items()}, features, rejects)


def _reason(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "the row is not UTF-8 text"
    return str(error).removeprefix("row 0: ")


# ---- TFRecord of tf.Examples ------------------------------------------------------------------

def _read_tfrecord(item: InputFile, inputs, id_columns, batch_size: int) -> Iterator[Chunk]:
    """A feature may be absent or present with no value (as the pipeline's examples hold a missing
    cell): both take the missing value. More than one value, or a value of another type, rejects
    the record."""
    import tensorflow as tf

    dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    spec = {i["name"]: tf.io.VarLenFeature(dtypes[i["dtype"]]) for i in inputs}
    first = 0
    for batch in tf.data.TFRecordDataset(item.path, compression_type=item.compression).batch(batch_size):
        records = batch.numpy()
        numbers = np.arange(first, first + len(records), dtype=np.int64)
        first += len(records)
        rejects, keep = [], np.ones(len(records), dtype=bool)
        try:
            parsed = tf.io.parse_example(records, spec)
        except tf.errors.InvalidArgumentError:  # find the records that do not parse, parse the others
            for index, record in enumerate(records):
                try:
                    tf.io.parse_example([record], spec)
                except tf.errors.InvalidArgumentError as error:
                    keep[index] = False
                    rejects.append(_record_reject(item, int(numbers[index]), record, _tf_message(error)))
            parsed = tf.io.parse_example(records[keep], spec) if keep.any() else None
        kept = np.flatnonzero(keep)
        good = np.ones(len(kept), dtype=bool)
        features = {}
        for i in inputs:
            values, problems = _one_value_each(parsed[i["name"]] if parsed is not None else None, len(kept), i)
            for index, problem in problems:
                if good[index]:
                    rejects.append(_record_reject(item, int(numbers[kept[index]]), records[kept[index]], problem))
                    good[index] = False
            features[i["name"]] = values
        kept = kept[good]
        ids = {name: np.array([_first_value(records[index], name) for index in kept], dtype=object)
               for name in id_columns}
        rejects.sort(key=lambda reject: reject["row"])
        yield Chunk(item.source, numbers[kept], ids, {name: values[good] for name, values in features.items()},
                    rejects)


def _one_value_each(sparse, rows: int, item: dict):
    """A VarLenFeature's values, one per row (the missing value where there is none), and the
    rows that cannot be scored with the reason."""
    default = item["default"].encode() if item["dtype"] == "string" else item["default"]
    values = np.full(rows, default, dtype=NUMPY_DTYPES[item["dtype"]])
    if sparse is None or not rows:
        return values, []
    row_of_value, given = sparse.indices.numpy()[:, 0], sparse.values.numpy()
    counts = np.bincount(row_of_value, minlength=rows)
    present, first = np.unique(row_of_value, return_index=True)
    values[present] = given[first]
    problems = [(int(row), f"feature '{item['name']}': {int(counts[row])} values where the model takes one")
                for row in np.flatnonzero(counts > 1)]
    if item["dtype"] == "float32":
        problems += [(int(row), f"feature '{item['name']}': {values[row]} is not a finite number")
                     for row in np.flatnonzero(~np.isfinite(values))]
    return values, problems


def _tf_message(error) -> str:
    """TensorFlow's parse error without the op's internal names."""
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", error.message.strip().splitlines()[0])
    return re.sub(r"\s*\[Op:\w+\]$", "", message)


def _record_reject(item: InputFile, row: int, record: bytes, message: str) -> dict:
    return {"source": item.source, "row": row, "reason": message,
            "record_base64": base64.b64encode(record).decode()}


def _first_value(record: bytes, name: str) -> str:
    from tensorflow.core.example import example_pb2

    feature = example_pb2.Example.FromString(record).features.feature.get(name)
    kind = feature.WhichOneof("kind") if feature is not None else None
    values = list(getattr(feature, kind).value) if kind else []
    if not values:
        return ""
    return values[0].decode("utf-8", errors="backslashreplace") if isinstance(values[0], bytes) else str(values[0])

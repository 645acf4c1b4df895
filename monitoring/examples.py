"""Serialized tf.Examples to columns.

Two decoders: tfx_bsl's (the one TFDV uses, exact about a feature that is present with an empty list) for
ExampleGen's splits, and TensorFlow's tf.data with tf.io.parse_example for request logs, 3x faster on the
taxi features (1M logged requests in a few seconds); there a feature without values counts as missing,
which is what the server logs for a missing input."""
import glob
import itertools
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from monitoring import table, tfrecord

CHUNK = 100_000


def _unify(arrays: List[pa.Array]) -> pa.Array:
    """One array of the blocks of a feature, whose value types may differ between requests (a JSON client
    sending 3 where another sends 3.5): numbers become float, anything with text becomes text."""
    types = {a.type.value_type for a in arrays if not pa.types.is_null(a.type.value_type)}
    if len(types) > 1:
        target = pa.large_list(pa.large_binary()) if any(pa.types.is_binary(t) or pa.types.is_large_binary(t)
                                                         for t in types) else pa.large_list(pa.float32())
        arrays = [a.cast(target) for a in arrays]
    else:
        target = pa.large_list(types.pop()) if types else arrays[0].type
        arrays = [a if a.type == target else a.cast(target) for a in arrays]
    return pa.concat_arrays(arrays)


def _decode_arrow(records: Iterable[bytes], names: Sequence[str]) -> Tuple[Dict[str, List[pa.Array]], int]:
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    blocks: Dict[str, List[pa.Array]] = {name: [] for name in names}
    rows, iterator = 0, iter(records)
    while True:
        chunk = list(itertools.islice(iterator, CHUNK))
        if not chunk:
            return blocks, rows
        batch = decoder.DecodeBatch(chunk)
        rows += batch.num_rows
        for name in names:
            index = batch.schema.get_field_index(name)
            blocks[name].append(batch.column(index) if index >= 0 else
                                pa.nulls(batch.num_rows, pa.large_list(pa.null())))


def _columns(blocks: Dict[str, List[pa.Array]], rows: int) -> Dict[str, table.Column]:
    if not rows:
        return {name: table.empty_column(0) for name in blocks}
    return {name: table.from_arrow(_unify(arrays)) for name, arrays in blocks.items()}


def decode(records: Iterable[bytes], names: Sequence[str]) -> Tuple[Dict[str, table.Column], int]:
    """Serialized tf.Examples, decoded by tfx_bsl a chunk at a time as they are read (bounded memory), to
    columns of `names`; also returns the number of examples."""
    blocks, rows = _decode_arrow(records, names)
    return _columns(blocks, rows), rows


_ARROW_TO_TF = {"int64": "int64", "float": "float32", "large_binary": "string", "binary": "string"}
# A feature the sampled examples lack: the type the config's kind is logged with.
_KIND_TYPES = {"categorical_string": "string", "categorical_int": "int64"}


def _spec(files: Sequence[str], names: Sequence[str], kinds: Dict[str, str], sample: int) -> Dict[str, str]:
    """Each wanted feature's list type, from the first examples of the first and the last file."""
    found: Dict[str, str] = {}
    for path in dict.fromkeys([files[0], files[-1]]):
        blocks, _ = _decode_arrow(itertools.islice(tfrecord.iter_records(path), sample), names)
        for name, arrays in blocks.items():
            value_type = str(arrays[0].type.value_type) if arrays else "null"
            if value_type in _ARROW_TO_TF:
                found.setdefault(name, _ARROW_TO_TF[value_type])
    return {name: found.get(name, _KIND_TYPES.get(kinds.get(name), "float32")) for name in names}


def _arrow(values: np.ndarray, rows_of_values: np.ndarray, rows: int) -> pa.Array:
    counts = np.bincount(rows_of_values, minlength=rows)
    offsets = np.zeros(rows + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    array = pa.array(values, pa.large_binary()) if values.dtype == object else pa.array(values)
    return pa.LargeListArray.from_arrays(pa.array(offsets), array, mask=pa.array(counts == 0))


def read_tfrecords(files: Sequence[str], names: Sequence[str], kinds: Optional[Dict[str, str]] = None,
                   sample: int = 1000) -> Tuple[Dict[str, table.Column], int]:
    """The examples of TFRecord files through tf.data and tf.io.parse_example, a chunk at a time. Files whose
    features change type (clients sending 3 where others send 3.5) are decoded by tfx_bsl instead; a damaged
    file is a RecordError naming it and the record."""
    import tensorflow as tf

    spec = {name: tf.io.VarLenFeature(kind) for name, kind in _spec(files, names, kinds or {}, sample).items()}
    compressed = {_gzip(path) for path in files}
    if len(compressed) > 1:
        return decode(itertools.chain.from_iterable(tfrecord.iter_records(f) for f in files), names)
    dataset = tf.data.TFRecordDataset(list(files), compression_type="GZIP" if compressed.pop() else "",
                                      buffer_size=8 << 20).batch(CHUNK)
    dataset = dataset.map(lambda batch: (tf.io.parse_example(batch, spec), tf.size(batch)),
                          num_parallel_calls=2, deterministic=True).prefetch(2)
    blocks: Dict[str, List[pa.Array]] = {name: [] for name in names}
    total = 0
    try:
        for parsed, rows in dataset:
            rows = int(rows)
            for name in names:
                value = parsed[name]
                blocks[name].append(_arrow(value.values.numpy(), value.indices.numpy()[:, 0], rows))
            total += rows
    except tf.errors.InvalidArgumentError:
        return decode(itertools.chain.from_iterable(tfrecord.iter_records(f) for f in files), names)
    except tf.errors.NotFoundError as error:
        raise FileNotFoundError(str(error)) from None
    except tf.errors.DataLossError:
        for path in files:
            tfrecord.read_records(path)  # raises the RecordError that names the damaged file and record
        raise tfrecord.RecordError(f"{', '.join(files)}: damaged (TensorFlow could not read them)") from None
    return _columns(blocks, total), total


def _gzip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def read_split(examples_uri: str, split: str, names: Sequence[str]) -> Tuple[Dict[str, table.Column], int]:
    """The examples of one split of an Examples artifact (ExampleGen's GZIP TFRecord files)."""
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    if not files:
        raise FileNotFoundError(f"no files in {os.path.join(examples_uri, f'Split-{split}')}")
    return decode(itertools.chain.from_iterable(tfrecord.iter_records(f) for f in files), names)

"""Serialized tf.Examples to columns, with tfx_bsl's C++ decoder (the one TFDV uses), a chunk at a time;
and the examples of an ExampleGen split read that way."""
import glob
import itertools
import os
from typing import Dict, Iterable, List, Sequence, Tuple

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


def decode(records: Iterable[bytes], names: Sequence[str]) -> Tuple[Dict[str, table.Column], int]:
    """Serialized tf.Examples, decoded a chunk at a time as they are read (bounded memory), to columns of
    `names`; also returns the number of examples."""
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    blocks: Dict[str, List[pa.Array]] = {name: [] for name in names}
    rows, iterator = 0, iter(records)
    while True:
        chunk = list(itertools.islice(iterator, CHUNK))
        if not chunk:
            break
        batch = decoder.DecodeBatch(chunk)
        rows += batch.num_rows
        for name in names:
            index = batch.schema.get_field_index(name)
            blocks[name].append(batch.column(index) if index >= 0 else
                                pa.nulls(batch.num_rows, pa.large_list(pa.null())))
    if not rows:
        return {name: table.empty_column(0) for name in names}, 0
    return {name: table.from_arrow(_unify(arrays)) for name, arrays in blocks.items()}, rows


def read_split(examples_uri: str, split: str, names: Sequence[str]) -> Tuple[Dict[str, table.Column], int]:
    """The examples of one split of an Examples artifact (ExampleGen's GZIP TFRecord files)."""
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    if not files:
        raise FileNotFoundError(f"no files in {os.path.join(examples_uri, f'Split-{split}')}")
    return decode(itertools.chain.from_iterable(tfrecord.iter_records(f) for f in files), names)

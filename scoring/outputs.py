"""What a scoring job writes: per row, the join key (the id columns, or the source file and row
number), the model's output and the model version, as CSV, TFRecord of tf.Examples or Parquet;
and the rejected rows with the reason, as JSON lines."""
import dataclasses
import io
import json
from typing import Dict, List, Sequence

import numpy as np

from scoring.inputs import KEY_COLUMNS, Chunk

FORMATS = {"csv": ".csv", "tfrecord": ".tfrecord", "parquet": ".parquet"}
VERSION_COLUMN = "model_version"


@dataclasses.dataclass(frozen=True)
class Layout:
    id_columns: tuple
    output_key: str  # `scores` or `predictions`
    width: int       # values per row of the output
    version: int

    @property
    def key_columns(self) -> tuple:
        return self.id_columns or KEY_COLUMNS

    @property
    def score_columns(self) -> List[str]:
        """One column per output value: `scores`, or `scores_0`, `scores_1`, ... for several."""
        if self.width == 1:
            return [self.output_key]
        return [f"{self.output_key}_{index}" for index in range(self.width)]

    @property
    def columns(self) -> List[str]:
        return [*self.key_columns, *self.score_columns, VERSION_COLUMN]

    def check(self) -> None:
        clash = sorted(set(self.id_columns) & {*self.score_columns, VERSION_COLUMN})
        if clash:
            raise ValueError(f"id column(s) {clash} would clash with the output's own columns; "
                             "rename them in the input")


def output_layout(model_path: str, signature: str, id_columns: Sequence[str], version: int) -> Layout:
    """The output key and width from the signature's SignatureDef (shape [-1, width])."""
    from apache_beam.io.filesystems import FileSystems
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with FileSystems.open(f"{model_path}/saved_model.pb") as handle:  # also gs://
        saved_model.ParseFromString(handle.read())
    graphs = [graph for graph in saved_model.meta_graphs if "serve" in graph.meta_info_def.tags]
    outputs = graphs[0].signature_def[signature].outputs
    key = next(iter(outputs))
    dims = [d.size for d in outputs[key].tensor_shape.dim]
    return Layout(tuple(id_columns), key, dims[1] if len(dims) == 2 and dims[1] > 0 else 1, version)


def _table(layout: Layout, chunk: Chunk, outputs: Dict[str, np.ndarray]):
    import pyarrow as pa

    scores = np.asarray(outputs[layout.output_key], dtype=np.float32).reshape(chunk.size, -1)
    if layout.id_columns:
        keys = {name: pa.array(chunk.ids[name].tolist(), pa.string()) for name in layout.id_columns}
    else:
        keys = {"source": pa.array([chunk.source] * chunk.size, pa.string()), "row": pa.array(chunk.rows)}
    columns = {**keys, **{name: pa.array(scores[:, index]) for index, name in enumerate(layout.score_columns)},
               VERSION_COLUMN: pa.array(np.full(chunk.size, layout.version, dtype=np.int64))}
    return pa.table(columns), scores


def csv_text(layout: Layout, chunk: Chunk, outputs) -> str:
    """The chunk's rows as CSV lines (one element, so Beam writes them in one call)."""
    from pyarrow import csv as pa_csv

    table, _ = _table(layout, chunk, outputs)
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False))
    return buffer.getvalue().decode().rstrip("\n")


def csv_header(layout: Layout) -> str:
    return ",".join(layout.columns)


def examples(layout: Layout, chunk: Chunk, outputs) -> List[bytes]:
    """One tf.Example per row; a multi-value output is one feature with all its values."""
    import pyarrow as pa
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    table, scores = _table(layout, chunk, outputs)
    offsets = pa.array(np.arange(chunk.size + 1, dtype=np.int32))
    columns = {}
    for name in [*layout.key_columns, VERSION_COLUMN]:
        values = table.column(name).combine_chunks()
        if pa.types.is_string(values.type):  # tf.Example bytes features are Arrow binary
            values = values.cast(pa.binary())
        columns[name] = pa.ListArray.from_arrays(offsets, values)
    columns[layout.output_key] = pa.ListArray.from_arrays(
        pa.array(np.arange(chunk.size + 1, dtype=np.int32) * layout.width), pa.array(scores.reshape(-1)))
    batch = pa.RecordBatch.from_arrays(list(columns.values()), list(columns))
    return RecordBatchToExamplesEncoder().encode(batch)


def parquet_table(layout: Layout, chunk: Chunk, outputs):
    return _table(layout, chunk, outputs)[0]


def parquet_schema(layout: Layout):
    import pyarrow as pa

    keys = ([(name, pa.string()) for name in layout.id_columns] if layout.id_columns
            else [("source", pa.string()), ("row", pa.int64())])
    return pa.schema([*keys, *[(name, pa.float32()) for name in layout.score_columns],
                      (VERSION_COLUMN, pa.int64())])


def reject_line(reject: dict) -> str:
    return json.dumps(reject, sort_keys=True)

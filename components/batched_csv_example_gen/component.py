"""TFX's CsvExampleGen with an executor that converts a batch of rows at a time (same examples,
same splits; see executor.py)."""
from tfx.components import CsvExampleGen
from tfx.dsl.components.base import executor_spec

from components.batched_csv_example_gen import executor


class BatchedCsvExampleGen(CsvExampleGen):
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

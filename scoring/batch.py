"""`tfxline score`: a Beam job that scores files with a pushed version through RunInference.

  files ─► plan ranges ─► Reshuffle ─► read chunks ─► RunInference ─► scores-*  (csv/tfrecord/parquet)
                                                                  └─► rejects-*.jsonl
The Reshuffle is of the small range descriptions only, so the ranges of one big file are shared
by the workers, and rows stream through the fused read-score-write stage: memory does not grow
with the input."""
import dataclasses
import json
import os
import time
from typing import List, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference

from config import speedups
from scoring import inputs, outputs
from scoring.model import SIGNATURE, PushedModel, RawFeaturesHandler, ScoringError

NAMESPACE = "tfxline.score"
# A CSV range (one Beam element, one pyarrow parse) holds this many model batches: each parse also
# costs a garbage-collector walk of the heap (pyarrow's signal handling on Python 3.10, ~0.1 s with
# TensorFlow loaded), so ranges of one batch would spend most of their time there.
BATCHES_PER_RANGE = 32
SUMMARY = "summary.json"


@dataclasses.dataclass(frozen=True)
class Job:
    input_path: str
    output_dir: str
    model: PushedModel
    id_columns: Sequence[str]
    output_format: str
    batch_size: int
    max_reject_share: float


@dataclasses.dataclass
class Result:
    scored: int
    rejected: int
    seconds: float
    summary_path: str

    @property
    def reject_share(self) -> float:
        total = self.scored + self.rejected
        return self.rejected / total if total else 0.0


class _Format(beam.DoFn):
    """A scored chunk to output elements; its rejected rows to the `rejects` output."""

    def __init__(self, layout: outputs.Layout, output_format: str):
        self._layout, self._format = layout, output_format
        self._scored = Metrics.counter(NAMESPACE, "rows_scored")
        self._rejected = Metrics.counter(NAMESPACE, "rows_rejected")

    def process(self, result):
        chunk, predictions = result.example, result.inference
        self._scored.inc(chunk.size)
        self._rejected.inc(len(chunk.rejects))
        for reject in chunk.rejects:
            yield beam.pvalue.TaggedOutput("rejects", outputs.reject_line(reject))
        if not chunk.size:
            return
        if self._format == "csv":
            yield outputs.csv_text(self._layout, chunk, predictions)
        elif self._format == "tfrecord":
            yield from outputs.examples(self._layout, chunk, predictions)
        else:
            yield outputs.parquet_table(self._layout, chunk, predictions)


def build(pipeline: beam.Pipeline, job: Job, files: List[inputs.InputFile], layout: outputs.Layout) -> None:
    model_inputs, ids, batch_size = job.model.inputs, tuple(job.id_columns), job.batch_size
    formatted = (
        pipeline
        | "Files" >> beam.Create(files)
        | "Plan" >> beam.FlatMap(inputs.plan, batch_size * BATCHES_PER_RANGE)
        | "Spread" >> beam.Reshuffle()
        | "Read" >> beam.FlatMap(inputs.read, model_inputs, ids, batch_size * BATCHES_PER_RANGE)
        | "Score" >> RunInference(RawFeaturesHandler(job.model.path, batch_size))
        | "Format" >> beam.ParDo(_Format(layout, job.output_format)).with_outputs("rejects", main="scores"))
    prefix = os.path.join(job.output_dir, "scores")
    suffix = outputs.FORMATS[job.output_format]
    if job.output_format == "csv":
        formatted.scores | "WriteScores" >> beam.io.WriteToText(prefix, suffix, header=outputs.csv_header(layout))
    elif job.output_format == "tfrecord":
        formatted.scores | "WriteScores" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=suffix)
    else:
        formatted.scores | "WriteScores" >> beam.io.WriteToParquetBatched(
            prefix, outputs.parquet_schema(layout), file_name_suffix=suffix)
    formatted.rejects | "WriteRejects" >> beam.io.WriteToText(os.path.join(job.output_dir, "rejects"), ".jsonl")


def _counter(result, name: str) -> int:
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(name))["counters"]
    return int(sum(counter.committed or counter.attempted or 0 for counter in counters))


def _check_output_dir(path: str) -> None:
    if os.path.isdir(path) and os.listdir(path):
        raise ScoringError(f"{path} is not empty; pass a new or empty --output directory "
                           "(the files of an earlier job would mix with this one's)")


def run(job: Job, pipeline_args: List[str]) -> Result:
    """Runs the job to the end and writes summary.json; the reject share is checked by the caller."""
    from apache_beam.options.pipeline_options import PipelineOptions

    _check_output_dir(job.output_dir)
    files = inputs.check(inputs.list_files(job.input_path), job.model.inputs, job.id_columns)
    layout = outputs.output_layout(job.model.path, SIGNATURE, job.id_columns, job.model.version)
    try:
        layout.check()
    except ValueError as error:
        raise ScoringError(str(error)) from None
    os.makedirs(job.output_dir, exist_ok=True)
    started = time.monotonic()
    pipeline = beam.Pipeline(options=PipelineOptions(pipeline_args))
    build(pipeline, job, files, layout)
    with speedups.collector_settings():
        result = pipeline.run()
        result.wait_until_finish()
    outcome = Result(_counter(result, "rows_scored"), _counter(result, "rows_rejected"),
                     time.monotonic() - started, os.path.join(job.output_dir, SUMMARY))
    summary = {
        "model": job.model.name, "model_version": job.model.version, "input": job.input_path,
        "files": len(files), "format": job.output_format, "columns": layout.columns,
        "rows_scored": outcome.scored, "rows_rejected": outcome.rejected,
        "reject_share": round(outcome.reject_share, 6), "max_reject_share": job.max_reject_share,
        "seconds": round(outcome.seconds, 2),
    }
    with open(outcome.summary_path, "w") as handle:
        json.dump(summary, handle, indent=2)
    return outcome


def reject_failure(job: Job, result: Result) -> Optional[str]:
    """The one-line failure when the rejected share is above the configured one."""
    if result.reject_share <= job.max_reject_share:
        return None
    return (f"{result.rejected:,} of {result.scored + result.rejected:,} rows rejected ({result.reject_share:.1%}), "
            f"more than scoring.max_reject_share {job.max_reject_share:.1%}; the reasons are in "
            f"{os.path.join(job.output_dir, 'rejects-*.jsonl')}")

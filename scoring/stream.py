"""Stream scoring on Beam: JSON messages in, results, dead letters and windowed statistics out.

  messages ─► parse ─┬─► RunInference (batches of at most `batch_size` within a bundle)
                     │   ─► results {"id", "<output>": [...], "model_version"}
                     └─► dead letters {"reason", "payload"}
  results + dead letters ─► fixed event-time windows ─► statistics (serving.window_stats)

`tfxline stream` reads a Pub/Sub subscription and writes Pub/Sub topics (a streaming runner such
as Dataflow, a Beam profile of the config); the transform itself takes any PCollection of
message bytes, and the tests drive it with Beam's TestStream.

Batches form within the runner's bundles, so a result waits at most for its bundle (a streaming
runner keeps them short). Beam's time-bounded batching
(`max_batch_duration_secs`) is not used: it buffers elements in state and emits them from a
processing-time timer, possibly behind the watermark, where downstream windows drop them as late
(with it, a TestStream test on the DirectRunner under load was missing 7 of 40 results)."""
import dataclasses
import json
import re
from typing import List, Optional

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.transforms import window

from scoring.inputs import Chunk
from scoring.model import PushedModel, RawFeaturesHandler, ScoringError
from serving.edge.runtime import BadInput, to_columns
from serving.window_stats import WindowStats

DEAD = "dead_letters"


@dataclasses.dataclass(frozen=True)
class StreamSettings:
    id_field: str = "id"
    batch_size: int = 256
    window_seconds: float = 60.0


class _Parse(beam.DoFn):
    """A message to (key, one-row chunk); the key carries the id and the raw features to the
    results and the statistics. A message that cannot be scored goes to the dead letters."""

    def __init__(self, inputs, id_field: str):
        self._inputs, self._id_field = inputs, id_field

    def process(self, payload: bytes, timestamp=beam.DoFn.TimestampParam):
        try:
            try:
                message = json.loads(payload)
            except (UnicodeDecodeError, ValueError) as error:
                raise BadInput(f"not JSON: {error}") from None
            if not isinstance(message, dict):
                raise BadInput("expected a JSON object of feature values")
            identifier = message.pop(self._id_field, None)
            columns = to_columns([message], self._inputs)
        except BadInput as error:
            letter = {"reason": str(error).removeprefix("row 0: ")}
            try:
                letter["payload"] = payload.decode("utf-8")
            except UnicodeDecodeError:
                import base64

                letter["payload_base64"] = base64.b64encode(payload).decode()
            yield beam.pvalue.TaggedOutput(DEAD, json.dumps(letter, sort_keys=True))
            return
        # The event time rides in the key: RunInference's batching emits at the end of the window.
        key = json.dumps({"id": identifier, "features": message, "time": float(timestamp)}, sort_keys=True,
                         default=str)
        yield key, Chunk("stream", np.zeros(1, dtype=np.int64), {}, columns, [])


class _StatsCombine(beam.CombineFn):
    def __init__(self, inputs):
        self._inputs = inputs

    def create_accumulator(self) -> WindowStats:
        return WindowStats(self._inputs)

    def add_input(self, stats: WindowStats, element) -> WindowStats:
        kind, features, outputs = element
        if kind == "scored":
            stats.add(features, outputs)
        else:
            stats.reject()
        return stats

    def merge_accumulators(self, accumulators) -> WindowStats:
        accumulators = iter(accumulators)
        first = next(accumulators)
        for other in accumulators:
            first.merge(other)
        return first

    def extract_output(self, stats: WindowStats) -> WindowStats:
        return stats


class _WindowJson(beam.DoFn):
    def __init__(self, model: PushedModel):
        self._model = model

    def process(self, stats: WindowStats, frame=beam.DoFn.WindowParam):
        yield json.dumps(stats.to_json(self._model.name, self._model.version, float(frame.start),
                                       float(frame.end)))


@dataclasses.dataclass
class StreamOutputs:
    results: beam.PCollection
    dead_letters: beam.PCollection
    stats: beam.PCollection


def score_stream(messages: beam.PCollection, model: PushedModel, settings: StreamSettings) -> StreamOutputs:
    parsed = messages | "Parse" >> beam.ParDo(_Parse(model.inputs, settings.id_field)).with_outputs(DEAD, main="ok")
    handler = RawFeaturesHandler(model.path, settings.batch_size, max_chunks=settings.batch_size)
    scored = (parsed.ok
              | "Score" >> RunInference(KeyedModelHandler(handler))
              | "Unpack" >> beam.MapTuple(lambda key, result: (json.loads(key), {
                  name: np.asarray(value, dtype=np.float64).reshape(-1).tolist()
                  for name, value in result.inference.items()}))
              | "EventTime" >> beam.Map(lambda element: window.TimestampedValue(element, element[0]["time"])))
    version = model.version
    results = scored | "Results" >> beam.MapTuple(lambda key, outputs: json.dumps(
        {"id": key["id"], **outputs, "model_version": version}))
    observations = (
        (scored | "Scored" >> beam.MapTuple(lambda key, outputs: ("scored", key["features"], outputs)),
         parsed[DEAD] | "Rejected" >> beam.Map(lambda letter: ("rejected", None, None)))
        | "Observations" >> beam.Flatten()
        | "Windows" >> beam.WindowInto(window.FixedWindows(settings.window_seconds)))
    stats = (observations
             | "Stats" >> beam.CombineGlobally(_StatsCombine(model.inputs)).without_defaults()
             | "StatsJson" >> beam.ParDo(_WindowJson(model)))
    return StreamOutputs(results, parsed[DEAD], stats)


PUBSUB_SUBSCRIPTION = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")
PUBSUB_TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")


def run_pubsub(model: PushedModel, settings: StreamSettings, subscription: str, output_topic: str,
               dead_letter_topic: str, stats_topic: Optional[str], pipeline_args: List[str]) -> None:
    """Runs until cancelled, on the runner the pipeline arguments name (Dataflow for Pub/Sub)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    if not PUBSUB_SUBSCRIPTION.match(subscription):
        raise ScoringError(f"--subscription {subscription!r} is not projects/PROJECT/subscriptions/NAME")
    for flag, topic in (("--output-topic", output_topic), ("--dead-letter-topic", dead_letter_topic),
                        ("--stats-topic", stats_topic)):
        if topic is not None and not PUBSUB_TOPIC.match(topic):
            raise ScoringError(f"{flag} {topic!r} is not projects/PROJECT/topics/NAME")
    options = PipelineOptions(pipeline_args)
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    outputs = score_stream(pipeline | "Read" >> beam.io.ReadFromPubSub(subscription=subscription), model, settings)
    for name, collection, topic in (("Results", outputs.results, output_topic),
                                    ("DeadLetters", outputs.dead_letters, dead_letter_topic),
                                    ("WindowStats", outputs.stats, stats_topic)):
        if topic:
            (collection | f"Encode{name}" >> beam.Map(str.encode)
             | f"Write{name}" >> beam.io.WriteToPubSub(topic))
    pipeline.run().wait_until_finish()

"""Stream scoring on Beam, driven by TestStream on the DirectRunner in streaming mode: results for every
good message, dead letters with the reason, and one statistics object per event-time window."""
import json
import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that

from scoring.model import resolve
from scoring.stream import StreamSettings, score_stream
from serving.edge.runtime import to_columns
from serving.window_stats import SCHEMA
from tests.helpers import example_rows, split_examples


def test_test_stream_results_dead_letters_and_windows(tiny_model, tmp_path):
    model = resolve(os.path.dirname(tiny_model.serving_base), "taxi")
    rows = example_rows(split_examples(tiny_model.examples_uri, "eval", limit=40), {i["name"] for i in model.inputs})
    signature = tf.saved_model.load(model.path).signatures["serving_raw"]
    expected = signature(**{n: tf.constant(v) for n, v in to_columns(rows, model.inputs).items()})["scores"].numpy()
    bad = [b"{not json", json.dumps({"id": "x", "fare": [1, 2]}).encode()]

    def messages(part, start):  # a tenth of a second apart from `start`, in one TestStream step
        return [beam.window.TimestampedValue(json.dumps({"id": index, **rows[index]}).encode(), start + 0.1 * offset)
                for offset, index in enumerate(part)]

    events = (TestStream().advance_watermark_to(0)
              .add_elements(messages(range(20), 1) + [beam.window.TimestampedValue(bad[0], 5)])  # window [0, 10)
              .advance_processing_time(1).advance_watermark_to(10)
              .add_elements(messages(range(20, 40), 11) + [beam.window.TimestampedValue(bad[1], 15)])  # [10, 20)
              .advance_processing_time(1).advance_watermark_to_infinity())

    options = PipelineOptions(["--direct_running_mode=in_memory"])
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as pipeline:
        outputs = score_stream(pipeline | events, model, StreamSettings(batch_size=8, window_seconds=10))

        def check_results(results):
            answers = {r["id"]: r for r in map(json.loads, results)}
            assert sorted(answers) == list(range(len(rows)))
            for index, answer in answers.items():
                assert answer["model_version"] == model.version
                np.testing.assert_allclose(answer["scores"], expected[index], atol=1e-6)

        def check_dead(letters):
            reasons = sorted(json.loads(letter)["reason"] for letter in letters)
            assert len(reasons) == 2 and reasons[0].startswith("feature 'fare': expected a number")
            assert reasons[1].startswith("not JSON")

        def check_stats(windows):
            windows = sorted(map(json.loads, windows), key=lambda w: w["window_start"])
            assert [w["schema"] for w in windows] == [SCHEMA, SCHEMA]
            assert [(w["count"], w["rejected"]) for w in windows] == [(20, 1), (20, 1)]
            assert [w["window_start"] for w in windows] == ["1970-01-01T00:00:00.000Z", "1970-01-01T00:00:10.000Z"]
            for window, part in zip(windows, (slice(0, 20), slice(20, None))):
                fares = [float(row["fare"]) for row in rows[part] if "fare" in row]
                assert abs(window["features"]["fare"]["mean"] - float(np.mean(fares))) < 1e-4
                assert window["features"]["fare"]["present"] == len(fares)
                assert abs(window["outputs"]["scores"]["mean"][0] - float(expected[part].mean())) < 1e-5

        assert_that(outputs.results, check_results, label="results")
        assert_that(outputs.dead_letters, check_dead, label="dead")
        assert_that(outputs.stats, check_stats, label="stats")

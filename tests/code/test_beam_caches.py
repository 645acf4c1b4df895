"""The cached Beam answers equal Beam's own, and pipelines (stateful ones too) still run."""
import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, SetupOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.runners.worker import statecache
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer

from pipeline import beam_caches

COUNT = BagStateSpec("count", VarIntCoder())
FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)


class Plain(beam.DoFn):
    def process(self, element):
        yield element


class Stateful(beam.DoFn):
    def process(self, element, count=beam.DoFn.StateParam(COUNT), flush=beam.DoFn.TimerParam(FLUSH)):
        count.add(1)
        flush.set(0)

    @on_timer(FLUSH)
    def on_flush(self, count=beam.DoFn.StateParam(COUNT)):
        yield sum(count.read())


class CountPerKey(beam.DoFn):
    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        count.add(1)
        yield element[0], sum(count.read())


class Holder:
    def stateful_method(self, element, count=beam.DoFn.StateParam(COUNT)):
        yield element


class DuplicateState(beam.DoFn):
    def process(self, element, a=beam.DoFn.StateParam(COUNT), b=beam.DoFn.StateParam(COUNT)):
        yield element


@pytest.fixture
def installed():
    beam_caches._dofn_specs.clear()
    beam_caches.install()
    yield
    userstate.get_dofn_specs = beam_caches._compute_dofn_specs
    PipelineOptions.view_as = beam_caches._compute_view
    statecache.get_deep_size = beam_caches._compute_deep_size


def test_answers_match_beams_own(installed):
    with_bound_method = Plain()
    with_bound_method.stateful_method = Holder().stateful_method
    for dofn in [Plain(), Stateful(), CountPerKey(), with_bound_method, beam.Map(len).fn]:
        for _ in range(2):  # the second answer comes from the cache
            assert userstate.get_dofn_specs(dofn) == beam_caches._compute_dofn_specs(dofn)
    assert userstate.get_dofn_specs(Stateful()) == ({COUNT}, {FLUSH})
    # A bound method on the instance changes the answer: it is part of the key, not the class alone.
    assert userstate.get_dofn_specs(with_bound_method) == ({COUNT}, set())
    assert userstate.get_dofn_specs(Plain()) == (set(), set())


def test_callers_cannot_change_the_cached_answer(installed):
    userstate.get_dofn_specs(Stateful())[0].clear()
    assert userstate.get_dofn_specs(Stateful())[0] == {COUNT}


def test_beams_checks_still_run(installed):
    for _ in range(2):  # an error is not cached as an answer
        with pytest.raises(ValueError, match="duplicate"):
            userstate.get_dofn_specs(DuplicateState())


def test_a_stateful_pipeline_runs_with_the_cache(installed):
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        counts = (pipeline
                  | beam.Create([("a", 1), ("a", 2), ("b", 3), ("a", 4)])
                  | beam.ParDo(CountPerKey())
                  | beam.CombinePerKey(max))
        # The bag state counted each key's elements: Beam saw the DoFn as stateful.
        assert_that(counts, equal_to([("a", 3), ("b", 1)]))
    assert any(cls is CountPerKey for cls, _ in beam_caches._dofn_specs)


def test_option_views_read_and_write_the_same_values(installed):
    options = PipelineOptions(["--direct_num_workers=3", "--direct_running_mode=multi_threading"])
    other = PipelineOptions(["--direct_num_workers=5"])
    view = options.view_as(DirectOptions)
    assert (view.direct_num_workers, view.direct_running_mode) == (3, "multi_threading")
    assert beam_caches._compute_view(options, DirectOptions).direct_num_workers == 3
    assert other.view_as(DirectOptions).direct_num_workers == 5
    options.view_as(SetupOptions).save_main_session = True
    assert options.view_as(SetupOptions).save_main_session is True
    assert beam_caches._compute_view(options, SetupOptions).save_main_session is True
    assert other.view_as(SetupOptions).save_main_session is False
    assert options.get_all_options()["direct_num_workers"] == 3


def test_side_input_weights_are_beams(installed):
    import numpy as np
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema(feature=[schema_pb2.Feature(name="fare", type=schema_pb2.FLOAT)])
    values = [
        [np.arange(1000.0), np.arange(10)], {"vocabulary": [b"Cash", b"Credit Card"] * 50, "count": 3},
        schema, pa.record_batch([pa.array([1.0, 2.0])], names=["fare"]), ("key", [Plain(), Stateful()]),
        [len, np, Plain, beam_caches],  # functions, modules and classes are not weighed
    ]
    for value in values:
        assert statecache.get_deep_size(value) == beam_caches._compute_deep_size(value)


def test_side_inputs_reach_the_state_cache(installed):
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        lookup = pipeline | "Lookup" >> beam.Create([("a", 1.5), ("b", 2.5)])
        scaled = (pipeline
                  | beam.Create(["a", "b", "a"])
                  | beam.Map(lambda key, table: (key, table[key]), table=beam.pvalue.AsDict(lookup)))
        assert_that(scaled, equal_to([("a", 1.5), ("b", 2.5), ("a", 1.5)]))

"""The local run's speed-ups (config/speedups.py): each gives Beam's own answers, pipelines still run on
them, the switch and the version checks turn them off."""
import base64
import bz2
import os
import subprocess
import sys
import zlib

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, SetupOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.runners.worker import statecache
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer

from config import speedups

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
def installed(monkeypatch):
    monkeypatch.delenv(speedups.SWITCH, raising=False)
    speedups.uninstall_beam()
    speedups.activate(beam_args=["--direct_running_mode=in_memory"])
    yield
    speedups.uninstall_beam()


def beams_own(name):
    return speedups._beam_originals[name]


def test_answers_match_beams_own(installed):
    with_bound_method = Plain()
    with_bound_method.stateful_method = Holder().stateful_method
    for dofn in [Plain(), Stateful(), CountPerKey(), with_bound_method, beam.Map(len).fn]:
        for _ in range(2):  # the second answer comes from the cache
            assert userstate.get_dofn_specs(dofn) == beams_own("get_dofn_specs")(dofn)
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
    assert any(cls is CountPerKey for cls, _ in speedups._dofn_specs)


def test_option_views_read_and_write_the_same_values(installed):
    options = PipelineOptions(["--direct_num_workers=3", "--direct_running_mode=multi_threading"])
    other = PipelineOptions(["--direct_num_workers=5"])
    view = options.view_as(DirectOptions)
    assert (view.direct_num_workers, view.direct_running_mode) == (3, "multi_threading")
    assert beams_own("view_as")(options, DirectOptions).direct_num_workers == 3
    assert other.view_as(DirectOptions).direct_num_workers == 5
    options.view_as(SetupOptions).save_main_session = True
    assert options.view_as(SetupOptions).save_main_session is True
    assert beams_own("view_as")(options, SetupOptions).save_main_session is True
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
        [len, np, Plain, speedups],  # functions, modules and classes are not weighed
    ]
    for value in values:
        assert statecache.get_deep_size(value) == beams_own("get_deep_size")(value)


def test_side_inputs_reach_the_state_cache(installed):
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        lookup = pipeline | "Lookup" >> beam.Create([("a", 1.5), ("b", 2.5)])
        scaled = (pipeline
                  | beam.Create(["a", "b", "a"])
                  | beam.Map(lambda key, table: (key, table[key]), table=beam.pvalue.AsDict(lookup)))
        assert_that(scaled, equal_to([("a", 1.5), ("b", 2.5), ("a", 1.5)]))


class Scale(beam.DoFn):
    def __init__(self, factor):
        self.factor = factor

    def process(self, element):
        yield element * self.factor


def test_pickles_are_written_with_zlib_and_read_back(installed):
    offset = 7
    encoded = pickler.dumps(lambda x: x + offset)
    assert zlib.decompress(base64.b64decode(encoded))
    assert not speedups.is_bz2(encoded)
    assert pickler.loads(encoded)(1) == 8


def test_pickles_beam_wrote_before_the_switch_still_load(installed):
    encoded = beams_own("dumps")(Scale(3))
    assert bz2.decompress(base64.b64decode(encoded))
    assert speedups.is_bz2(encoded) and speedups.is_bz2(encoded.decode())
    assert list(pickler.loads(encoded).process(2)) == [6]


def test_a_pipeline_with_a_side_input_runs_on_zlib_pickles(installed):
    with beam.Pipeline(argv=["--direct_running_mode=in_memory", "--pickle_library=cloudpickle"]) as pipeline:
        one = beam.pvalue.AsSingleton(pipeline | "one" >> beam.Create([1]))
        scaled = (pipeline | beam.Create([1, 2, 3]) | beam.ParDo(Scale(10))
                  | beam.Map(lambda x, side: x + side, side=one))
        assert_that(scaled, equal_to([11, 21, 31]))


def test_zlib_pickles_only_where_workers_share_the_process(monkeypatch):
    monkeypatch.delenv(speedups.SWITCH, raising=False)
    speedups.uninstall_beam()
    try:
        assert "beam-zlib-pickles" not in speedups.activate(
            beam_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
        assert pickler.dumps is beams_own("dumps")
    finally:
        speedups.uninstall_beam()
    assert speedups.workers_in_process(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert speedups.workers_in_process([])
    assert not speedups.workers_in_process(["--runner=DataflowRunner"])


# The rest start a fresh interpreter: activation changes process-wide state.
def run_python(code: str, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code, *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_the_switch_names_what_is_off(capsys):
    every = {s.name for s in speedups.SPEEDUPS}
    assert speedups._switched_off("1") == set() and speedups._switched_off("") == set()
    assert speedups._switched_off("0") == every == speedups._switched_off("off")
    assert speedups._switched_off("-fast-exit, -beam-dofn-specs") == {"fast-exit", "beam-dofn-specs"}
    assert speedups._switched_off("-fast_exit") == {"fast_exit"}
    assert "unknown speed-ups ['fast_exit']" in capsys.readouterr().err


def test_activation_follows_the_switch_and_the_config():
    code = ("from config import speedups; import sys\n"
            "print(','.join(speedups.activate(enabled=sys.argv[1] == 'on', beam_args=[])))")
    every = sorted(s.name for s in speedups.SPEEDUPS)
    assert run_python(code, "on", TFXLINE_SPEEDUPS="1").stdout.strip().split(",") == every
    some = run_python(code, "on", TFXLINE_SPEEDUPS="-fast-exit,-beam-dofn-specs").stdout.strip().split(",")
    assert some == sorted(set(every) - {"fast-exit", "beam-dofn-specs"})
    assert run_python(code, "on", TFXLINE_SPEEDUPS="0").stdout.strip() == ""
    assert run_python(code, "off", TFXLINE_SPEEDUPS="1").stdout.strip() == ""


def test_another_library_version_skips_the_speed_up_with_one_line():
    code = ("import importlib.metadata as m; real = m.version\n"
            "m.version = lambda name: '2.60.0' if name == 'apache-beam' else real(name)\n"
            "from config import speedups; from apache_beam.transforms import userstate\n"
            "before = userstate.get_dofn_specs\n"
            "print(speedups.activate(beam_args=[])); print(userstate.get_dofn_specs is before)")
    result = run_python(code, TFXLINE_SPEEDUPS="1")
    assert result.returncode == 0, result.stderr
    active, untouched = result.stdout.strip().splitlines()
    assert "beam" not in active and "fast-exit" in active and untouched == "True"
    lines = [line for line in result.stderr.splitlines() if "speed-up" in line]
    assert "tfxline: speed-up 'beam-dofn-specs' is off: written for apache-beam 2.59.*, 2.60.0 is installed" in lines
    assert len(lines) == len([s for s in speedups.SPEEDUPS if s.distribution == "apache-beam"])


def test_cloud_clients_load_when_used():
    code = ("import sys; from config import speedups; speedups.activate(beam_args=[])\n"
            "import apache_beam.io.gcp.bigquery_tools as tools\n"
            "print('google.cloud.bigquery.client' in sys.modules)\n"
            "print(tools.gcp_bigquery.Client.__name__)\n"
            "print('google.cloud.bigquery.client' in sys.modules)")
    assert run_python(code, TFXLINE_SPEEDUPS="1").stdout.split() == ["False", "Client", "True"]

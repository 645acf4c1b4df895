"""The zlib switch for Beam's pickled transforms: what it writes, what it reads, a real pipeline."""
import base64
import bz2
import zlib

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.testing.util import assert_that, equal_to

from pipeline import beam_pickling, local


class Scale(beam.DoFn):
    def __init__(self, factor):
        self.factor = factor

    def process(self, element):
        yield element * self.factor


@pytest.fixture
def installed():
    beam_pickling.install()
    yield
    pickler.dumps, pickler.loads = beam_pickling._dumps, beam_pickling._loads


def test_writes_zlib_and_reads_it_back(installed):
    offset = 7
    encoded = pickler.dumps(lambda x: x + offset)
    assert zlib.decompress(base64.b64decode(encoded))
    assert not beam_pickling.is_bz2(encoded)
    assert pickler.loads(encoded)(1) == 8


def test_reads_what_beam_wrote_before_install(installed):
    encoded = beam_pickling._dumps(Scale(3))
    assert bz2.decompress(base64.b64decode(encoded))
    assert beam_pickling.is_bz2(encoded) and beam_pickling.is_bz2(encoded.decode())
    assert list(pickler.loads(encoded).process(2)) == [6]


def test_a_beam_pipeline_runs_on_it(installed):
    with beam.Pipeline(argv=["--direct_running_mode=in_memory", "--pickle_library=cloudpickle"]) as pipeline:
        scaled = (pipeline | beam.Create([1, 2, 3]) | beam.ParDo(Scale(10))
                  | beam.Map(lambda x, side: x + side, side=beam.pvalue.AsSingleton(pipeline | "one" >> beam.Create([1]))))
        assert_that(scaled, equal_to([11, 21, 31]))


def test_installed_only_where_workers_share_the_process():
    assert local.workers_in_process(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert local.workers_in_process([])
    assert not local.workers_in_process(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert not local.workers_in_process(["--runner=DataflowRunner"])

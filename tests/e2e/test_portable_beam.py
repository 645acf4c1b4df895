"""The pipeline's Beam components on Beam's portable runner (the path Flink, Spark and Dataflow take):
Beam's Python job service and an SDK worker pool run as separate processes on loopback ports, and
`tfxline run` hands them every Beam job (--runner=PortableRunner --environment_type=EXTERNAL). The
artifacts equal the DirectRunner run's. Workers lacking tfxline's code fail with a clear error: the
image contract of every remote runner."""
import os
import subprocess

import pytest

from config import load_config
from metadata import runs
from tests import beam_services as services
from tests.conftest import write_config
from tests.helpers import TFXLINE, overall_auc, rows_per_split, store_for

pytestmark = pytest.mark.e2e

# A sitecustomize for the negative control's worker pool: its workers cannot import tfxline's code.
WITHOUT_TFXLINE = '''import sys
class _WithoutTfxline:
    def find_spec(self, name, path=None, target=None):
        if name == "components" or name.startswith("components."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _WithoutTfxline())
'''


def portable_config(root, data_dir, jobs, workers):
    return write_config(root, data={"path": str(data_dir)}, output={"root": str(root / "out")},
                        beam={"profile": "portable",
                              "profiles": {"portable": services.portable_profile(jobs, workers)}})


@pytest.fixture(scope="module")
def portable_run(tmp_path_factory, small_taxi_dir, beam_services):
    jobs, workers = beam_services
    root = tmp_path_factory.mktemp("portable_run")
    path = portable_config(root, small_taxi_dir, jobs, workers)
    result = subprocess.run([TFXLINE, "run", "--config", str(path)], capture_output=True, text=True, timeout=1800,
                            cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return load_config(str(path)), result


def test_every_beam_job_went_to_the_job_service_and_its_workers(portable_run, beam_services):
    jobs, workers = beam_services
    config, result = portable_run
    assert "Summary of 'taxi': 14 components" in result.stdout
    # CsvExampleGen, StatisticsGen, Transform (analyze, then the graph's checks) and the Evaluator.
    assert jobs.log_text().count("Running job") >= 4
    assert jobs.log_text().count(f"Requesting worker at {workers.endpoint}") >= 4
    assert workers.log_text().count("Starting worker") >= 4


def test_the_artifacts_equal_the_direct_runner_runs(portable_run, taxi_run):
    portable, _ = portable_run
    direct = runs.latest_run(store_for(taxi_run.config), taxi_run.config.name)
    on_pool = runs.latest_run(store_for(portable), portable.name)
    assert rows_per_split(on_pool["StatisticsGen"].output("statistics").uri) == \
        rows_per_split(direct["StatisticsGen"].output("statistics").uri)
    with open(os.path.join(on_pool["ImportSchemaGen"].output("schema").uri, "schema.pbtxt")) as a, \
            open(os.path.join(direct["ImportSchemaGen"].output("schema").uri, "schema.pbtxt")) as b:
        assert a.read() == b.read()
    assert overall_auc(on_pool["Evaluator"].output("evaluation").uri) == \
        pytest.approx(overall_auc(direct["Evaluator"].output("evaluation").uri), abs=1e-6)


def test_workers_without_tfxlines_code_fail_with_a_clear_error(tmp_path, small_taxi_dir, beam_services):
    jobs, _ = beam_services
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(WITHOUT_TFXLINE)
    workers = services.worker_pool(tmp_path, "pool_without_tfxline",
                                                 {"PYTHONPATH": str(tmp_path / "site")})
    try:
        path = portable_config(tmp_path, small_taxi_dir, jobs, workers)
        result = subprocess.run([TFXLINE, "run", "--config", str(path)], capture_output=True, text=True,
                                timeout=900, cwd=tmp_path)
    finally:
        workers.stop()
    assert result.returncode == 1
    assert "[ 1/14] CsvExampleGen                  FAILED" in result.stdout
    error = result.stderr.strip().splitlines()
    assert error == ["tfxline: the pipeline stopped: ModuleNotFoundError: No module named 'components' in the Beam "
                     "workers: they must run where tfxline is installed (the pipeline image; for environment_type "
                     "EXTERNAL, start the worker pool from it)", "(run again with --verbose for the full logs)"]
    assert not os.path.exists(tmp_path / "out" / "serving")

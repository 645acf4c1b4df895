"""Running the pipeline locally: LocalDagRunner, Beam DirectRunner, SQLite MLMD, and one
progress line per component instead of TFX's and TensorFlow's logs (unless verbose)."""
import contextlib
import logging
import os
import sys
import time
import warnings
from typing import Callable, Iterator, List

from config import PipelineConfig, beam, speedups
from metadata import store
from serving import layout

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "AUTOGRAPH_VERBOSITY": "0"}
# `tf.keras` is tf-keras (Keras 2), the Keras that the Trainer, TFT's TransformFeaturesLayer and
# TFMA use. Otherwise importing TensorFlow also imports Keras 3, which nothing in a run uses.
KERAS_ENV = {"TF_USE_LEGACY_KERAS": "1"}


def prepare_environment(verbose: bool) -> None:
    """Must run before TensorFlow is imported: it reads these variables once."""
    for key, value in KERAS_ENV.items():
        os.environ.setdefault(key, value)
    if not verbose:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        warnings.filterwarnings("ignore")
        logging.getLogger().setLevel(logging.CRITICAL)
        logging.getLogger("absl").setLevel(logging.ERROR)


def pipeline_root(config: PipelineConfig) -> str:
    return os.path.abspath(os.path.join(config.output.root, "pipeline", config.name))


def beam_pipeline_args(config: PipelineConfig) -> List[str]:
    """The local run's Beam arguments, from the config's `beam.profile`."""
    return beam.pipeline_args(config, image=config.kubeflow.image)


def failure_line(error: BaseException, config: PipelineConfig) -> str:
    """A failed run's cause in one line. A Beam job that failed on its workers carries their whole
    traceback; its last line is the cause. Workers that cannot import tfxline's code break the
    image contract of remote runners, which the line then names."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    cause = lines[-1] if len(lines) > 1 else f"{type(error).__name__}: {lines[0] if lines else ''}"
    if "No module named" in cause and not speedups.workers_in_process(beam_pipeline_args(config)):
        cause += (" in the Beam workers: they must run where tfxline is installed (the pipeline image; for "
                  "environment_type EXTERNAL, start the worker pool from it)")
    return cause


def build_local_pipeline(config: PipelineConfig):
    from components.serving_baseline.executor import stable_version
    from pipeline.pipeline import create_pipeline

    serving_dir = layout.absolute(config.output.serving)
    return create_pipeline(
        config,
        pipeline_root=pipeline_root(config),
        data_path=config.data.path,
        schema_path=config.schema_.curated_path if config.schema_.source == "curated" else None,
        serving_dir=serving_dir,
        edge_dir=layout.absolute(config.output.edge),
        image=config.kubeflow.image,
        metadata_connection_config=store.connection_config(config),
        stable_when_built=stable_version(serving_dir, config.name))


class ProgressReporter(logging.Handler):
    """Turns LocalDagRunner's per-component log records into progress lines."""

    def __init__(self, total: int, write: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.total, self._write = total, write
        self._index, self._started, self._cached, self._skipped = 0, 0.0, False, False
        self.current = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg if isinstance(record.msg, str) else ""
        if message == "Component %s is running.":
            self._index += 1
            self.current, self._started, self._cached, self._skipped = record.args[0], time.monotonic(), False, False
            self._write(f"[{self._index:2d}/{self.total}] {self.current:<30} running")
        elif message == "A cached execution %d is used.":
            self._cached = True
        elif message == "Skipping execution for %s":  # a condition (tfx Cond) was false
            self._skipped = True
        elif message == "Component %s is finished.":
            state = "skipped" if self._skipped else "cached" if self._cached else "done"
            self._write(f"[{self._index:2d}/{self.total}] {record.args[0]:<30} {state:<7} "
                        f"{time.monotonic() - self._started:6.1f} s")
            self.current = None

    def report_failure(self) -> None:
        if self.current:
            self._write(f"[{self._index:2d}/{self.total}] {self.current:<30} FAILED")


def log_path(config: PipelineConfig) -> str:
    return os.path.abspath(os.path.join(config.output.root, "tfxline.log"))


@contextlib.contextmanager
def native_stderr_to(path: str) -> Iterator[None]:
    """Sends the process's stderr (file descriptor 2) to `path`: the TFLite converter and
    runtime log from C++ whatever TF_CPP_MIN_LOG_LEVEL says."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def run_local(config: PipelineConfig, verbose: bool = False, write: Callable[[str], None] = print) -> float:
    """Runs the pipeline; returns its wall time. Raises what the failing component raised."""
    prepare_environment(verbose)
    # Before TFX and Beam are imported: one of them defers imports that Beam makes.
    speedups.activate(config.speedups, beam_pipeline_args(config))
    from absl import logging as absl_logging
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    reporter = ProgressReporter(0, write)
    absl_logger = absl_logging.get_absl_logger()
    previous = (absl_logger.level, absl_logger.propagate)
    absl_logger.setLevel(logging.INFO)
    # Importing TensorBoard (the Trainer does) sets absl to WARNING, which would silence the
    # runner's per-component records mid-run; hold the level for the run's duration.
    absl_logger.setLevel = lambda level: None
    absl_logger.addHandler(reporter)
    if not verbose:
        absl_logger.propagate = False
    else:
        absl_logging.use_absl_handler()
        logging.getLogger().setLevel(logging.INFO)
    started = time.monotonic()
    try:
        tfx_pipeline = build_local_pipeline(config)
        reporter.total = len(tfx_pipeline.components)
        with speedups.collector_settings(), \
                contextlib.nullcontext() if verbose else native_stderr_to(log_path(config)):
            LocalDagRunner().run(tfx_pipeline)
    except BaseException:
        reporter.report_failure()
        raise
    finally:
        absl_logger.removeHandler(reporter)
        del absl_logger.setLevel
        absl_logger.setLevel(previous[0])
        absl_logger.propagate = previous[1]
        sys.stdout.flush()
    return time.monotonic() - started

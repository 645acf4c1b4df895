"""Shared fixtures: small real data sets and one real pipeline run per test session."""
import csv
import dataclasses
import os
import random
from pathlib import Path

# Before TensorFlow is imported anywhere: quiet C++ logs, tf-keras for Keras.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest
import yaml

from config import load_config, resolve_path

TAXI_DATA = "package:tfx/examples/chicago_taxi_pipeline/data/simple/data.csv"
TAXI_CONFIG = "package:config/taxi.yaml"
SMALL_TAXI_ROWS = 3000


def read_taxi_rows():
    with open(resolve_path(TAXI_DATA), newline="") as handle:
        reader = csv.reader(handle)
        return next(reader), list(reader)


def write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_config(directory: Path, **overrides) -> Path:
    """The taxi config with `overrides` merged in at the top level (dicts are merged)."""
    with open(resolve_path(TAXI_CONFIG)) as handle:
        raw = yaml.safe_load(handle)
    raw["schema"]["curated_path"] = resolve_path(raw["schema"]["curated_path"])
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def taxi_rows():
    return read_taxi_rows()


@pytest.fixture(scope="session")
def small_taxi_dir(tmp_path_factory, taxi_rows):
    header, rows = taxi_rows
    sample = random.Random(7).sample(rows, SMALL_TAXI_ROWS)
    directory = tmp_path_factory.mktemp("small_taxi")
    write_csv(directory / "data.csv", header, sample)
    return directory


@dataclasses.dataclass
class PipelineRun:
    config: object
    root: Path
    output: list


def run_pipeline(config_path: Path):
    """Runs a pipeline in-process; returns (config, progress lines, error or None)."""
    from pipeline import local

    config = load_config(str(config_path))
    lines = []
    try:
        local.run_local(config, write=lines.append)
    except Exception as error:  # the test inspects what stopped the run
        return config, lines, error
    return config, lines, None


@pytest.fixture(scope="session")
def taxi_run(tmp_path_factory, small_taxi_dir):
    """One real run of the taxi pipeline on a 3,000-row sample (LocalDagRunner, SQLite MLMD)."""
    root = tmp_path_factory.mktemp("taxi_run")
    config_path = write_config(root, data={"path": str(small_taxi_dir)}, output={"root": str(root / "out")})
    config, lines, error = run_pipeline(config_path)
    if error is not None:
        raise error
    return PipelineRun(config, root, lines)


@pytest.fixture(scope="session")
def beam_services(tmp_path_factory):
    """Beam's Python job service and an SDK worker pool, each its own process on a loopback port."""
    from tests import beam_services as services

    directory = tmp_path_factory.mktemp("beam_services")
    jobs = services.job_service(directory)
    workers = None
    try:
        workers = services.worker_pool(directory)
        yield jobs, workers
    finally:
        for service in (workers, jobs):
            if service is not None:
                service.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, taxi_rows):
    """A small taxi model trained, pushed and exported for the edge by the components' executors
    (tests/tiny_model.py), with the local run's speed-ups, as `tfxline run` has them."""
    from config import speedups
    from tests import tiny_model as builder

    speedups.activate(beam_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    root = tmp_path_factory.mktemp("tiny_model")
    header, rows = taxi_rows
    return builder.build(root, header, rows, write_config(root, training={"epochs": 2}))

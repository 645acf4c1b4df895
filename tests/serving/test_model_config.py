"""TF Serving's config files: text formats, and labels and version policy as models are pushed."""
import json
import os
import subprocess
import sys

import pytest
from tensorflow_serving.config import model_server_config_pb2

from serving import layout, model_config, release
from serving.model_config import (batching_parameters_text, monitoring_config_text, parse_batching_parameters,
                                  parse_monitoring_config, read_model_server_config, write_model_server_config)
from serving.release_state import write_serving_configs

CONTRACT_EXAMPLE = """
model_config_list {
  config {
    name: "half_plus_two"
    base_path: "/models/half_plus_two"      # absolute; excludes the version dir
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 123 versions: 124 } }
    version_labels { key: "stable" value: 123 }
    version_labels { key: "canary" value: 124 }
  }
  config: { name: "half_plus_three", base_path: "/models/half_plus_three", model_platform: "tensorflow" },
}
"""


def _entry(path, name="taxi"):
    return model_config.find_model(read_model_server_config(str(path)), name)


def _serving_dir(tmp_path, *versions):
    for version in versions:
        (tmp_path / "serving" / "taxi" / str(version)).mkdir(parents=True)
        (tmp_path / "serving" / "taxi" / str(version) / "saved_model.pb").write_bytes(b"graph")
    return tmp_path / "serving"


# ---- ModelServerConfig -------------------------------------------------------------------------

def test_the_contract_example_config_parses_with_labels_and_policy(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(CONTRACT_EXAMPLE)
    config = read_model_server_config(str(path))
    assert [entry.name for entry in config.model_config_list.config] == ["half_plus_two", "half_plus_three"]
    first = config.model_config_list.config[0]
    assert dict(first.version_labels) == {"stable": 123, "canary": 124}
    assert list(first.model_version_policy.specific.versions) == [123, 124]


def test_a_written_config_reads_back_equal(tmp_path):
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name="taxi", base_path="/models/taxi", model_platform="tensorflow")
    entry.version_labels["stable"] = 7
    path = tmp_path / "models.config"
    write_model_server_config(config, str(path))
    assert read_model_server_config(str(path)) == config


@pytest.mark.parametrize("text, detail", [
    ("model_config_list { config { name: \"taxi\" bogus: 1 } }", "bogus"),
    ("model_config_list { config { name: \"taxi\" ", "1:"),
    ("model_config_list { config { name: taxi } }", "name"),
])
def test_a_bad_config_raises_tf_servings_parse_message(tmp_path, text, detail):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        read_model_server_config(str(path))
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in str(caught.value)
    assert detail in str(caught.value).split("ModelServerConfig", 1)[1]


def test_atomic_write_leaves_no_temporary_files_even_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "models.config"
    path.write_text("# old\n")
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name="taxi", base_path="/models/taxi", model_platform="tensorflow")
    write_model_server_config(config, str(path))
    assert os.listdir(tmp_path) == ["models.config"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(layout.os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_model_server_config(model_server_config_pb2.ModelServerConfig(), str(path))
    assert os.listdir(tmp_path) == ["models.config"]
    assert read_model_server_config(str(path)) == config


# ---- monitoring.config -------------------------------------------------------------------------

def test_monitoring_text_round_trips():
    assert parse_monitoring_config(monitoring_config_text()) == (True, "/monitoring/prometheus/metrics")
    assert parse_monitoring_config(monitoring_config_text("/metrics")) == (True, "/metrics")


@pytest.mark.parametrize("text, expected", [
    ('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }', (True, "/monitoring/prometheus/metrics")),
    ("prometheus_config: {\n  enable: true  # on\n  path: '/m'\n}\n", (True, "/m")),
    ('prometheus_config { enable: true; path: "" }', (True, "/monitoring/prometheus/metrics")),
    ("prometheus_config { enable: false }", (False, "/monitoring/prometheus/metrics")),
    ("# monitoring off\n", (False, "/monitoring/prometheus/metrics")),
])
def test_monitoring_accepts_text_format_variants(text, expected):
    assert parse_monitoring_config(text) == expected


@pytest.mark.parametrize("text, named", [
    ("prometheus { enable: true }", "prometheus"),
    ("prometheus_config { enable: true, port: 9090 }", "port"),
    ("prometheus_config { enable: yes }", "enable"),
    ("prometheus_config { path: /metrics }", "path"),
    ("prometheus_config: true", "prometheus_config"),
    ("prometheus_config { enable: true ", 'Expected "}"'),
    # A scalar field needs its colon in protobuf's text format (TF Serving's C++ parser too).
    ("prometheus_config {\n  enable true\n}", "prometheus_config.enable"),
    ("prometheus_config { enable: true, enable: false }", "enable"),
    ('prometheus_config { path: "\\x" }', "prometheus_config.path"),
])
def test_monitoring_errors_name_the_field(text, named):
    with pytest.raises(ValueError, match="monitoring config") as caught:
        parse_monitoring_config(text)
    assert named in str(caught.value)


# ---- batching_parameters.txt -------------------------------------------------------------------

def test_batching_text_round_trips():
    parsed = parse_batching_parameters(batching_parameters_text(max_batch_size=32, batch_timeout_micros=500,
                                                                max_enqueued_batches=20, num_batch_threads=3))
    assert {key: parsed[key] for key in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                                         "num_batch_threads")} == {"max_batch_size": 32, "batch_timeout_micros": 500,
                                                                   "max_enqueued_batches": 20, "num_batch_threads": 3}
    # Left out, num_batch_threads is the serving machine's CPU count, as in TF Serving.
    assert parse_batching_parameters(batching_parameters_text())["num_batch_threads"] == os.cpu_count()


def test_batching_defaults_are_tf_servings():
    assert parse_batching_parameters("") == {
        "max_batch_size": 1000, "batch_timeout_micros": 0, "max_enqueued_batches": 10,
        "num_batch_threads": os.cpu_count(), "allowed_batch_sizes": [], "thread_pool_name": "batch_threads",
        "enable_large_batch_splitting": False, "max_execution_batch_size": 1000, "pad_variable_length_inputs": False}


def test_batching_reads_every_field():
    text = """
    max_batch_size { value: 128 }
    batch_timeout_micros { value: 0 }
    max_enqueued_batches { value: 1000000 }
    num_batch_threads { value: 8 }
    thread_pool_name { value: "taxi_pool" }
    enable_large_batch_splitting { value: true }
    max_execution_batch_size { value: 64 }
    allowed_batch_sizes: 8
    allowed_batch_sizes: [32, 64]
    allowed_batch_sizes: 128
    pad_variable_length_inputs: true
    """
    assert parse_batching_parameters(text) == {
        "max_batch_size": 128, "batch_timeout_micros": 0, "max_enqueued_batches": 1000000, "num_batch_threads": 8,
        "allowed_batch_sizes": [8, 32, 64, 128], "thread_pool_name": "taxi_pool",
        "enable_large_batch_splitting": True, "max_execution_batch_size": 64, "pad_variable_length_inputs": True}


@pytest.mark.parametrize("text, named", [
    ("max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2 allowed_batch_sizes: 8",
     "allowed_batch_sizes must be positive and increasing"),
    ("max_batch_size { value: 16 } allowed_batch_sizes: [4, 8]", "allowed_batch_sizes must end with max_batch_size"),
    ("allowed_batch_sizes: [4, 8]", "allowed_batch_sizes must end with max_batch_size (1000)"),
    ("max_batch_size: 128", "max_batch_size"),
    ("max_batch_size { value: big }", "max_batch_size"),
    ("max_batch_size { size: 8 }", "size"),
    ("num_batch_threads { value: 0 }", "num_batch_threads"),
    ("batch_timeout_micros { value: -1 }", "batch_timeout_micros"),
    ("max_batch_size { value: 8 } max_batch_size { value: 9 }", "max_batch_size"),
    ("batch_size { value: 8 }", "batch_size"),
    ("thread_pool_name { value: pool }", "thread_pool_name"),
    ("pad_variable_length_inputs: maybe", "pad_variable_length_inputs"),
    ("max_batch_size { value: 8 ", 'Expected "}"'),
])
def test_batching_errors_name_the_field(text, named):
    with pytest.raises(ValueError, match="batching parameters") as caught:
        parse_batching_parameters(text)
    assert named in str(caught.value)


# ---- write_serving_configs: labels and version policy -----------------------------------------

def test_first_push_writes_every_file_with_stable_on_the_version(tmp_path):
    serving = _serving_dir(tmp_path, 100)
    write_serving_configs(str(serving), "taxi", 100)

    assert sorted(name for name in os.listdir(serving) if not name.startswith(".")) == [
        "batching_parameters.txt", "models.config", "models.local.config", "monitoring.config",
        "release_history.json", "taxi"]
    entry = _entry(serving / "models.config")
    assert (entry.base_path, entry.model_platform) == ("/models/taxi", "tensorflow")
    assert dict(entry.version_labels) == {"stable": 100}
    assert list(entry.model_version_policy.specific.versions) == [100]
    local = _entry(serving / "models.local.config")
    assert local.base_path == str(serving / "taxi") and os.path.isabs(local.base_path)
    local.base_path = entry.base_path
    assert local == entry
    assert parse_monitoring_config((serving / "monitoring.config").read_text()) == (True, "/monitoring/prometheus/metrics")
    assert parse_batching_parameters((serving / "batching_parameters.txt").read_text())["max_batch_size"] == 64
    history = json.loads((serving / "release_history.json").read_text())["taxi"]
    assert history["stable_versions"] == [100]
    assert [(event["action"], event["version"], event["labels"]) for event in history["events"]] == [
        ("push", 100, {"stable": 100})]


def test_later_pushes_move_canary_and_keep_stable(tmp_path):
    serving = _serving_dir(tmp_path, 100, 200, 300)
    write_serving_configs(str(serving), "taxi", 100)
    write_serving_configs(str(serving), "taxi", 200)
    entry = _entry(serving / "models.config")
    assert dict(entry.version_labels) == {"stable": 100, "canary": 200}
    assert list(entry.model_version_policy.specific.versions) == [100, 200]

    write_serving_configs(str(serving), "taxi", 300)
    for name in ("models.config", "models.local.config"):
        entry = _entry(serving / name)
        assert dict(entry.version_labels) == {"stable": 100, "canary": 300}
        assert list(entry.model_version_policy.specific.versions) == [100, 300]  # 200 is unloaded
    history = json.loads((serving / "release_history.json").read_text())["taxi"]
    assert [event["version"] for event in history["events"]] == [100, 200, 300]
    assert history["stable_versions"] == [100]


def test_pushing_the_same_version_again_changes_nothing(tmp_path):
    serving = _serving_dir(tmp_path, 100, 200)
    write_serving_configs(str(serving), "taxi", 100)
    write_serving_configs(str(serving), "taxi", 200)
    names = ("models.config", "models.local.config", "release_history.json")
    before = {name: ((serving / name).read_bytes(), os.stat(serving / name).st_mtime_ns) for name in names}
    write_serving_configs(str(serving), "taxi", 200)
    write_serving_configs(str(serving), "taxi", 100)
    assert {name: ((serving / name).read_bytes(), os.stat(serving / name).st_mtime_ns) for name in names} == before


def test_a_version_rolled_back_from_is_not_made_canary_again_by_a_rerun(tmp_path):
    serving = _serving_dir(tmp_path, 100, 200)
    write_serving_configs(str(serving), "taxi", 100)
    write_serving_configs(str(serving), "taxi", 200)
    assert release.main(["promote", "--serving-dir", str(serving)]) == 0
    assert release.main(["rollback", "--serving-dir", str(serving)]) == 0
    # The pipeline re-runs on the same data: the Pusher re-publishes 200, the newest version.
    write_serving_configs(str(serving), "taxi", 200)
    assert dict(_entry(serving / "models.config").version_labels) == {"stable": 100}


def test_other_models_in_the_config_are_kept(tmp_path):
    serving = _serving_dir(tmp_path, 100)
    (serving / "models.config").write_text(CONTRACT_EXAMPLE)
    write_serving_configs(str(serving), "taxi", 100)
    for name, root in (("models.config", "/models"), ("models.local.config", str(serving))):
        config = read_model_server_config(str(serving / name))
        assert [entry.name for entry in config.model_config_list.config] == ["half_plus_two", "half_plus_three", "taxi"]
        other = config.model_config_list.config[0]
        assert other.base_path == f"{root}/half_plus_two"
        assert dict(other.version_labels) == {"stable": 123, "canary": 124}
        assert list(other.model_version_policy.specific.versions) == [123, 124]


def test_tuned_monitoring_and_batching_files_are_not_overwritten(tmp_path):
    serving = _serving_dir(tmp_path, 100)
    (serving / "batching_parameters.txt").write_text("max_batch_size { value: 8 }\n")
    (serving / "monitoring.config").write_text("prometheus_config { enable: false }\n")
    write_serving_configs(str(serving), "taxi", 100)
    assert (serving / "batching_parameters.txt").read_text() == "max_batch_size { value: 8 }\n"
    assert (serving / "monitoring.config").read_text() == "prometheus_config { enable: false }\n"


def test_a_corrupt_models_config_stops_the_write_and_is_left_alone(tmp_path):
    serving = _serving_dir(tmp_path, 100)
    (serving / "models.config").write_text("model_config_list { oops")
    with pytest.raises(ValueError, match="Error parsing text-format tensorflow.serving.ModelServerConfig"):
        write_serving_configs(str(serving), "taxi", 100)
    assert (serving / "models.config").read_text() == "model_config_list { oops"
    assert not (serving / "models.local.config").exists()


def test_writes_leave_no_temporary_files(tmp_path):
    serving = _serving_dir(tmp_path, 100, 200)
    write_serving_configs(str(serving), "taxi", 100)
    write_serving_configs(str(serving), "taxi", 200)
    assert [name for name in os.listdir(serving) if name.startswith(".") and name != ".release.lock"] == []


def test_serving_modules_do_not_import_tensorflow():
    code = ("import sys, serving.layout, serving.model_config, serving.release_state, serving.release; "
            "sys.exit('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_pusher_writes_the_configs_next_to_the_pushed_model(tiny_model):
    serving = os.path.dirname(tiny_model.serving_base)
    versions = layout.versions(os.path.join(serving, "taxi"))
    assert len(versions) == 1
    entry = _entry(os.path.join(serving, "models.config"))
    assert entry.base_path == "/models/taxi"
    assert dict(entry.version_labels) == {"stable": versions[0]}
    assert list(entry.model_version_policy.specific.versions) == versions
    local = _entry(os.path.join(serving, "models.local.config"))
    assert local.base_path == os.path.join(os.path.abspath(serving), "taxi")
    assert dict(local.version_labels) == {"stable": versions[0]}

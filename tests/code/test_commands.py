"""Every command as installed: `--help` answers, flags are spelled by one rule, a failure is one line."""
import argparse
import importlib
import subprocess

import pytest

from pipeline import cli
from tests.conftest import write_config
from tests.helpers import TFXLINE

# tensorflow_model_server's flags (tensorflow_serving/model_servers/main.cc): tfxline keeps their spelling.
TF_SERVING_FLAGS = {
    "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms",
    "rest_api_enable_cors_support", "enable_batching", "allow_version_labels_for_unavailable_models",
    "batching_parameters_file", "enable_per_model_batching_parameters", "model_config_file",
    "model_config_file_poll_wait_seconds", "model_name", "model_base_path", "num_load_threads",
    "num_unload_threads", "max_num_load_retries", "load_retry_interval_micros", "file_system_poll_wait_seconds",
    "flush_filesystem_caches", "tensorflow_session_parallelism", "tensorflow_session_config_file",
    "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism", "use_alts_credentials",
    "ssl_config_file", "platform_config_file", "per_process_gpu_memory_fraction", "saved_model_tags",
    "grpc_channel_arguments", "grpc_max_threads", "enable_model_warmup", "num_request_iterations_for_warmup",
    "version", "monitoring_config_file", "remove_unused_fields_from_bundle_metagraph", "prefer_tflite_model",
    "num_tflite_pools", "num_tflite_interpreters_per_pool", "enable_signature_method_name_check",
    "xla_cpu_compilation_enabled", "enable_profiler", "thread_pool_factory_config_file",
}


def subcommands(words: tuple, parser: argparse.ArgumentParser):
    """(words, parser) for every leaf command under `parser`."""
    choices = [action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not choices:
        yield words, parser
        return
    for name, child in choices[0].items():
        if name in cli.DELEGATED and not words:
            child = importlib.import_module(cli.DELEGATED[name][0]).build_parser()
        yield from subcommands(words + (name,), child)


COMMANDS = dict(subcommands((), cli.build_parser()))


def test_every_documented_command_exists():
    names = {" ".join(words) for words in COMMANDS}
    assert {"run", "compile", "submit", "dry-run", "schema draft", "review", "serve", "release status",
            "release canary", "release promote", "release rollback", "release clear-canary", "edge predict",
            "edge serve", "edge stream", "score", "stream", "monitor", "data simulate", "feedback ingest",
            "release compare", "lineage"} <= names


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_help_of_the_installed_command(words):
    result = subprocess.run([TFXLINE, *words, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: tfxline {' '.join(words)}")
    assert result.stderr == ""


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_flags_follow_one_spelling_rule(words):
    for action in COMMANDS[words]._actions:
        long_options = [option[2:] for option in action.option_strings if option.startswith("--")]
        if not long_options or long_options == ["help"]:
            continue
        primary = long_options[0]
        if primary in TF_SERVING_FLAGS:
            continue  # tensorflow_model_server's own spelling
        assert "_" not in primary, f"tfxline {' '.join(words)} --{primary}: tfxline's own flags are kebab-case"
        if "-" in primary:
            assert primary.replace("-", "_") in long_options, f"--{primary} lacks its snake_case alias"


@pytest.mark.parametrize("argv, problem", [
    (["compile", "--config", "/no/such.yaml"], "config error: /no/such.yaml: config file not found"),
    (["schema", "draft", "--config", "/no/such.yaml", "--output", "x.pbtxt"], "config error"),
    (["run", "--config", "/no/such.yaml"], "config error"),
    (["review", "--config", "/no/such.yaml"], "config error: /no/such.yaml: config file not found"),
    (["serve"], "give --model_base_path"),
    (["submit", "--spec", "/no/such.yaml"], "tfxline submit: /no/such.yaml: no such spec file"),
    (["compile", "--spec", "/no/such.yaml"], "tfxline compile: /no/such.yaml: no such spec file"),
    (["release", "status", "--serving-dir", "/no/such/dir"], "no models.config in /no/such/dir"),
    (["edge", "predict", "rows.csv", "--edge-dir", "/no/such/dir"], "no loadable model"),
    (["score", "rows.csv", "--output", "out", "--serving-dir", "/no/such/dir"], "no 'stable' label for taxi"),
    (["stream", "--subscription", "s", "--output-topic", "t", "--dead-letter-topic", "d", "--serving-dir",
      "/no/such/dir"], "no 'stable' label for taxi"),
    (["edge", "stream", "--broker", "localhost"], "is not HOST:PORT"),
    (["monitor", "--requests", "/no/such/log"], "tfxline monitor: /no/such/log: no such request log directory"),
    (["monitor", "--config", "/no/such.yaml"], "config error"),
    (["data", "simulate", "--source", "/no/such.csv", "--output", "x.csv"], "--source /no/such.csv: no such file"),
    (["data", "simulate", "--span", "2"], "no data.span_pattern to place a new span; pass --output"),
    (["feedback", "ingest", "/no/such.csv"], "tfxline feedback ingest: /no/such.csv: no such feedback file"),
    (["release", "compare", "--serving-dir", "/no/such/dir"], "tfxline release: there is no canary of taxi to compare"),
    (["lineage"], "tfxline lineage: no ML Metadata at "),
    (["lineage", "--config", "/no/such.yaml"], "config error"),
])
def test_a_failing_command_prints_one_line(argv, problem, tmp_path):
    result = subprocess.run([TFXLINE, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    assert problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_review_before_any_run_says_so_in_one_line(tmp_path):
    config = write_config(tmp_path, output={"root": str(tmp_path / "out")})
    result = subprocess.run([TFXLINE, "review", "--config", str(config)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("tfxline review: pipeline 'taxi' has no runs yet")
    assert "run `tfxline run` with this config first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # reading did not create an empty store
    listed = subprocess.run([TFXLINE, "review", "--config", str(config), "--list-runs"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout == "" and listed.stderr == ""

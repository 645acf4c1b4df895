"""Local run settings derived from the config."""
from metadata import store
from pipeline import local
from config import load_config
from tests.conftest import write_config


def test_sqlite_metadata_lives_under_the_output_root(tmp_path):
    config = load_config(str(write_config(tmp_path, output={"root": str(tmp_path / "out")})))
    connection = store.connection_config(config)
    assert connection.sqlite.filename_uri == str(tmp_path / "out" / "metadata.sqlite")
    assert local.pipeline_root(config) == str(tmp_path / "out" / "pipeline" / "taxi")


def test_mysql_metadata_for_shared_deployments(tmp_path, monkeypatch):
    monkeypatch.setenv("MLMD_MYSQL_PASSWORD", "s3cret")
    config = load_config(str(write_config(tmp_path, metadata={"kind": "mysql", "host": "mlmd.internal",
                                                               "database": "tfxline"})))
    connection = store.connection_config(config)
    assert (connection.mysql.host, connection.mysql.port, connection.mysql.database) == ("mlmd.internal", 3306,
                                                                                        "tfxline")
    assert connection.mysql.password == "s3cret"


def test_mysql_password_from_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MLMD_MYSQL_PASSWORD", "from-the-environment")
    (tmp_path / "password").write_text("from-the-file\n")
    config = load_config(str(write_config(tmp_path, metadata={"kind": "mysql",
                                                               "password_file": str(tmp_path / "password")})))
    assert store.connection_config(config).mysql.password == "from-the-file"


def test_the_local_run_uses_the_configs_beam_profile(tmp_path):
    in_process = load_config(str(write_config(tmp_path / "a")))
    workers = load_config(str(write_config(tmp_path / "b", beam={
        "profile": "two", "profiles": {"two": {"runner": "DirectRunner", "workers": 2, "extra_args": ["--x=1"]}}})))
    assert local.beam_pipeline_args(in_process) == [
        "--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1",
        "--sdk_container_image=tfxline:latest", "--pickle_library=cloudpickle"]
    assert local.beam_pipeline_args(workers)[1:3] == ["--direct_running_mode=multi_processing",
                                                      "--direct_num_workers=2"]
    assert local.beam_pipeline_args(workers)[-1] == "--x=1"


def test_progress_lines_name_component_state_and_time():
    import logging

    lines = []
    reporter = local.ProgressReporter(2, lines.append)
    for message, args in [("Component %s is running.", ("Trainer",)), ("A cached execution %d is used.", (4,)),
                          ("Component %s is finished.", ("Trainer",)), ("Component %s is running.", ("Pusher",))]:
        reporter.emit(logging.LogRecord("absl", logging.INFO, __file__, 1, message, args, None))
    reporter.report_failure()
    assert lines[0] == "[ 1/2] Trainer                        running"
    assert lines[1].startswith("[ 1/2] Trainer                        cached") and lines[1].endswith(" s")
    assert lines[3] == "[ 2/2] Pusher                         FAILED"


def test_a_node_whose_condition_is_false_shows_as_skipped():
    import logging

    lines = []
    reporter = local.ProgressReporter(1, lines.append)
    for message, args in [("Component %s is running.", ("BulkInferrer",)),
                          ("Skipping execution for %s", ("BulkInferrer",)),
                          ("Component %s is finished.", ("BulkInferrer",))]:
        reporter.emit(logging.LogRecord("absl", logging.INFO, __file__, 1, message, args, None))
    assert lines[1].startswith("[ 1/1] BulkInferrer                   skipped")

"""ML Metadata on a real MariaDB server (Debian's mariadb-server): a data directory made by
mariadb-install-db in a temporary directory, the server on a loopback port, a user with a password
and one database. The pipeline runs twice through the installed command; caching and the baseline
behave exactly as with SQLite. The password reaches MLMD from the environment or a file, never the
config file or the compiled spec; an unreachable server or a wrong password is one line before the
run writes anything."""
import os
import shutil
import subprocess
import time

import pytest

from config import load_config
from metadata import runs, store
from pipeline import summary
from tests import beam_services
from tests.conftest import write_config
from tests.helpers import TFXLINE, progress_fields, pushed_versions

pytestmark = pytest.mark.e2e

PASSWORD = "mlmd-pw-7c1e"
SERVER = shutil.which("mariadbd") or "/usr/sbin/mariadbd"


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    if not os.path.exists(SERVER):
        pytest.fail("mariadb-server is not installed: apt-get install mariadb-server (make test installs it)")
    root = tmp_path_factory.mktemp("mariadb")
    data, socket = root / "data", root / "mysqld.sock"
    install = subprocess.run(["mariadb-install-db", f"--datadir={data}", "--user=root", "--skip-test-db",
                              "--auth-root-authentication-method=socket"], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    port = beam_services.unused_port()
    process = subprocess.Popen([SERVER, f"--datadir={data}", "--user=root", f"--port={port}",
                                "--bind-address=127.0.0.1", f"--socket={socket}", f"--pid-file={root / 'pid'}",
                                "--skip-name-resolve"], stdout=open(root / "server.log", "w"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "ready for connections" not in (root / "server.log").read_text():
        assert process.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()
        time.sleep(0.5)
    sql = (f"CREATE DATABASE mlmd; CREATE USER 'tfxline'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
           "GRANT ALL ON mlmd.* TO 'tfxline'@'127.0.0.1';")
    subprocess.run(["mariadb", f"--socket={socket}", "-uroot", "-e", sql], check=True, timeout=60)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=60)


def mysql_config(root, data_dir, port, **metadata):
    return write_config(root, data={"path": str(data_dir)}, output={"root": str(root / "out")},
                        metadata={"kind": "mysql", "host": "127.0.0.1", "port": port, "database": "mlmd",
                                  "user": "tfxline", **metadata})


def tfxline_run(path, cwd, password=PASSWORD):
    env = {**os.environ, "MLMD_MYSQL_PASSWORD": password}
    return subprocess.run([TFXLINE, "run", "--config", str(path)], capture_output=True, text=True, timeout=1800,
                          cwd=cwd, env=env)


def test_two_runs_share_metadata_on_mariadb_as_on_sqlite(mariadb, tmp_path, small_taxi_dir, monkeypatch):
    path = mysql_config(tmp_path, small_taxi_dir, mariadb)
    first = tfxline_run(path, tmp_path)
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "out" / "metadata.sqlite").exists()
    second = tfxline_run(path, tmp_path)
    assert second.returncode == 0, second.stderr
    monkeypatch.setenv("MLMD_MYSQL_PASSWORD", PASSWORD)
    config = load_config(str(path))
    mlmd = store.open_store(config)
    executions = runs.executions_by_component(mlmd, config.name)
    assert len(executions) == 14 and all(len(e) == 2 for e in executions.values())
    latest = runs.latest_run(mlmd, config.name)
    # As with SQLite (tests/e2e/test_pipeline.py): the first model now serves as the baseline.
    assert sorted(name for name, run in latest.items() if not run.cached) == \
        ["DriftBaselinePublisher", "DriftGate", "Evaluator", "Pusher", "ServingBaseline", "TFLiteExport"]
    assert sum(progress_fields(line)[1] == "cached" for line in second.stdout.splitlines()
               if line.startswith("[")) == 8
    versions = pushed_versions(config)
    assert len(versions) == 1
    assert latest["ServingBaseline"].output("model").custom_properties["serving_version"].int_value == int(versions[0])
    assert summary.collect(config)["has_baseline"]
    assert PASSWORD not in path.read_text()


def test_the_password_file_works_and_the_password_never_reaches_the_spec(mariadb, tmp_path, small_taxi_dir):
    (tmp_path / "mlmd-password").write_text(PASSWORD + "\n")
    path = mysql_config(tmp_path, small_taxi_dir, mariadb, password_file=str(tmp_path / "mlmd-password"))
    config = load_config(str(path))
    store.check_store(config)  # the file's password is taken
    result = subprocess.run([TFXLINE, "compile", "--config", str(path), "--output", "spec.yaml"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "MLMD_MYSQL_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stderr
    spec = (tmp_path / "spec.yaml").read_text()
    assert PASSWORD not in spec and "mlmd-password" not in spec and "MLMD_MYSQL_PASSWORD" not in spec


def test_an_unreachable_server_or_a_wrong_password_is_one_line_before_anything_is_written(mariadb, tmp_path,
                                                                                         small_taxi_dir):
    closed = beam_services.unused_port()
    down = tfxline_run(mysql_config(tmp_path / "down", small_taxi_dir, closed), tmp_path)
    assert down.returncode == 1
    assert down.stderr.strip() == (f"tfxline run: cannot reach the MySQL server 127.0.0.1:{closed} (Connection "
                                   "refused); check metadata.host and metadata.port, and that the server runs")
    wrong = tfxline_run(mysql_config(tmp_path / "wrong", small_taxi_dir, mariadb), tmp_path, password="nope")
    assert wrong.returncode == 1
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"tfxline run: the MySQL server 127.0.0.1:{mariadb} refused database 'mlmd' for user 'tfxline'")
    assert "check the password ($MLMD_MYSQL_PASSWORD)" in lines[0]
    for case in ("down", "wrong"):
        assert not (tmp_path / case / "out").exists()

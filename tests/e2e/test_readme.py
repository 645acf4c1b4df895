"""Every command example in the README, run as written, in the README's order, in a copy of the
repository that shares its `.venv`. Servers (a command that serves until stopped) start in the
background and are stopped at the end; `curl` fails on an HTTP error status. Commands that need
what this machine lacks are listed in NOT_HERE with the reason, and nothing else is left out."""
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)

# The first words of a command that cannot run here, and why.
NOT_HERE = {
    "make test": "the test command itself (CI runs it)",
    "docker": "needs a Docker engine",
    "kubectl": "needs a Kubernetes cluster",
    "gsutil": "needs a Google Cloud project",
    "tfxline submit": "needs a Kubeflow Pipelines endpoint",
    "tfxline stream": "needs Pub/Sub, a Google Cloud project",
    "jupyter lab": "opens an interactive notebook server",
    # The device's own environment: run here, they would install into the shared test environment.
    "pip": "installs onto an edge device",
    "python3.10 -m venv": "installs onto an edge device",
}
# Commands that serve until stopped, by the words they start with (after the program path).
SERVERS = ("tfxline serve", "tfxline edge serve", "tfxline edge stream", "tfxline monitor --serve")
PORT_FLAG = re.compile(r"--(?:rest_api_port|port|rest-api-port)[= ](\d+)|--broker[= ][\w.]+:(\d+)")


def commands(text: str) -> list:
    """A shell block's commands: continued lines and multi-line quoted strings joined, comments dropped."""
    result, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if pending.endswith("\\"):
            continue
        result.append(pending)
        pending = ""
    assert not pending, f"unterminated command in the README: {pending}"
    return result


def examples() -> list:
    """(language, command or script) in README order; `$ ` lines of transcript blocks are commands."""
    found = []
    for language, body in FENCE.findall((ROOT / "README.md").read_text()):
        if language in ("sh", "bash", "shell"):
            found += [("sh", command) for command in commands(body)]
        elif language == "python":
            found.append(("python", body))
        elif not language:
            found += [("sh", line[2:]) for line in body.splitlines() if line.startswith("$ ")]
    return found


def program_words(command: str) -> str:
    words = shlex.split(command, comments=True)
    return " ".join([os.path.basename(words[0])] + words[1:]) if words else ""


def not_here(command: str):
    words = program_words(command)
    return next((why for prefix, why in NOT_HERE.items() if words == prefix or words.startswith(prefix + " ")),
                None)


def is_server(command: str) -> bool:
    words = program_words(command)
    return any(words == prefix or words.startswith(prefix + " ") for prefix in SERVERS)


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s:\n{log.read_text()[-3000:]}")


def sandbox(tmp_path: Path) -> Path:
    """The repository's tracked files, with the environment the tests run in as its `.venv`."""
    copy = tmp_path / "tfxline"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    venv = Path(os.environ.get("VIRTUAL_ENV") or Path(os.sys.executable).parent.parent)
    (copy / ".venv").symlink_to(venv)
    return copy


# A prelude for every shell command: curl that fails on an HTTP error status, as written otherwise.
PRELUDE = "curl() { command curl --fail-with-body --silent --show-error \"$@\"; }\nset -o pipefail\n"


@pytest.mark.slow  # runs the pipeline five times and every server: about 15 minutes on 2 cores
def test_every_readme_example_runs_as_written(tmp_path):
    found = examples()
    assert len(found) > 10, "the README's examples were not found"
    home = sandbox(tmp_path)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    servers, skipped, ran = [], [], 0
    try:
        for index, (language, text) in enumerate(found):
            if language == "python":
                result = subprocess.run([str(home / ".venv" / "bin" / "python"), "-c", text], cwd=home, env=env,
                                        capture_output=True, text=True, timeout=600)
                assert result.returncode == 0, f"README Python example failed:\n{text}\n{result.stderr[-3000:]}"
                ran += 1
                continue
            why = not_here(text)
            if why:
                skipped.append((text.splitlines()[0], why))
                continue
            if text.strip() == "kill $!":  # as in one shell: the server started last
                assert servers, "the README stops a server it did not start"
                servers[-1].terminate()
                servers[-1].wait(timeout=30)
                ran += 1
                continue
            if is_server(text):
                text = text.rstrip().rstrip("&").rstrip()
                ports = [int(port) for match in PORT_FLAG.findall(text) for port in match if port]
                assert ports, f"a README server example names no port: {text}"
                log = tmp_path / f"server-{index}.log"
                process = subprocess.Popen(["bash", "-c", PRELUDE + "exec " + text], cwd=home, env=env,
                                           stdout=open(log, "w"), stderr=subprocess.STDOUT)
                servers.append(process)
                wait_for_port(ports[0], process, log)
                ran += 1
                continue
            result = subprocess.run(["bash", "-c", PRELUDE + text], cwd=home, env=env, capture_output=True,
                                    text=True, timeout=1200)
            assert result.returncode == 0, (f"README example failed (exit {result.returncode}):\n{text}\n"
                                            f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
            ran += 1
    finally:
        for process in servers:
            process.terminate()
        for process in servers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    assert ran > 10
    # Only the commands this machine cannot run were left out, each for its stated reason.
    assert {why for _, why in skipped} <= set(NOT_HERE.values())


def test_commands_are_split_as_a_shell_reads_them():
    block = ("# a comment\n.venv/bin/tfxline serve --rest_api_port=8501 \\\n  --model_name=taxi\n"
             "curl -s localhost:8501/v1/models/taxi:predict -d '{\"instances\":\n  [1]}'\n\n"
             "echo done  # trailing\n")
    assert commands(block) == [".venv/bin/tfxline serve --rest_api_port=8501 \\\n  --model_name=taxi",
                               "curl -s localhost:8501/v1/models/taxi:predict -d '{\"instances\":\n  [1]}'",
                               "echo done  # trailing"]
    assert is_server(commands(block)[0]) and not is_server(commands(block)[1])
    assert not_here("docker compose -f x.yml up -d") == "needs a Docker engine"
    assert not_here(".venv/bin/tfxline run") is None

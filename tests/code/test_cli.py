"""The installed command's exit: code, output, exit handlers and threads as on a normal exit, with the
fast-exit speed-up and without it."""
import subprocess
import sys

import pytest

from tests.conftest import write_config

# Registers an exit handler, starts a non-daemon thread and an executor worker, then runs the command as installed.
SCRIPT = """
import atexit, sys, threading, time
marker, config, fast = sys.argv[1], sys.argv[2], sys.argv[3] == "fast"
atexit.register(lambda: open(marker, "a").write("handler "))
threading.Thread(target=lambda: (time.sleep(0.5), open(marker, "a").write("thread "))).start()
# An idle worker that only threading's exit hook stops (as in servers that use executors).
from concurrent.futures import ThreadPoolExecutor
executor = ThreadPoolExecutor(1)
executor.submit(lambda: None).result()
from config import speedups
if fast:
    speedups.activate(beam_args=[])  # as a run does before it ends
assert speedups.active("fast-exit") == fast
sys.argv = ["tfxline", "run", "--config", config]
from pipeline.cli import console_main
console_main()
print("not reached")
"""


@pytest.mark.parametrize("mode", ["fast", "normal"])
def test_console_main_exits_with_the_code_after_threads_and_exit_handlers(tmp_path, mode):
    marker = tmp_path / "marker"
    config = write_config(tmp_path, training={"epochs": 0})
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT, str(marker), str(config), mode],
                            capture_output=True, text=True, timeout=60, env={"TFXLINE_SPEEDUPS": "1"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("tfxline: config error:") and "training.epochs" in result.stderr
    assert "not reached" not in result.stdout
    assert marker.read_text() == "thread handler "


def test_installed_command_is_console_main():
    from importlib.metadata import entry_points

    (command,) = [e for e in entry_points(group="console_scripts") if e.name == "tfxline"]
    assert command.value == "pipeline.cli:console_main"

"""The installed command's exit: code, output, exit handlers and threads as on a normal exit."""
import subprocess
import sys

from tests.conftest import write_config

# Registers an exit handler, starts a non-daemon thread and an executor worker, then runs the command as installed.
SCRIPT = """
import atexit, sys, threading, time
marker, config = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(marker, "a").write("handler "))
threading.Thread(target=lambda: (time.sleep(0.5), open(marker, "a").write("thread "))).start()
# An idle worker that only threading's exit hook stops (as in servers that use executors).
from concurrent.futures import ThreadPoolExecutor
executor = ThreadPoolExecutor(1)
executor.submit(lambda: None).result()
sys.argv = ["tfxline", "run", "--config", config]
from pipeline.cli import console_main
console_main()
print("not reached")
"""


def test_console_main_exits_with_the_code_after_threads_and_exit_handlers(tmp_path):
    marker = tmp_path / "marker"
    config = write_config(tmp_path, training={"epochs": 0})
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(marker), str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("tfxline: config error:") and "training.epochs" in result.stderr
    assert "not reached" not in result.stdout
    assert marker.read_text() == "thread handler "


def test_installed_command_is_console_main():
    from importlib.metadata import entry_points

    (command,) = [e for e in entry_points(group="console_scripts") if e.name == "tfxline"]
    assert command.value == "pipeline.cli:console_main"


def test_pipeline_modules_import_without_the_unused_modules():
    code = ("import sys; from pipeline.cli import UNUSED_MODULES\n"
            "for name in UNUSED_MODULES: sys.modules[name] = None\n"
            "import apache_beam, tensorflow_data_validation, tensorflow_model_analysis, tensorflow_transform.beam\n"
            "import tfx.components, pipeline.pipeline, components.tflite_export.executor, trainer.run\n"
            "from apache_beam.io import ReadFromText, WriteToText\n"
            "print([name for name in UNUSED_MODULES if sys.modules[name] is not None])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"

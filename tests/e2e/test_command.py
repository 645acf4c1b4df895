"""The pipeline run as the installed command runs it (`console_main`): a separate process without
the unused modules, with zlib-compressed Beam pickles and the exit that skips teardown."""
import os
import subprocess
import sys

import pytest

from config import load_config
from tests.conftest import write_config
from tests.helpers import pushed_versions

pytestmark = pytest.mark.e2e


def test_the_command_runs_every_component_and_pushes(tmp_path, small_taxi_dir):
    config_path = write_config(tmp_path, data={"path": str(small_taxi_dir)}, output={"root": str(tmp_path / "out")})
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[11/11] TFLiteExport                   done" in result.stdout
    assert "Summary of 'taxi': 11 components" in result.stdout and "blessed     yes" in result.stdout
    config = load_config(str(config_path))
    (version,) = pushed_versions(config)
    assert f"pushed      version {version} to " in result.stdout
    assert os.path.isfile(os.path.join(config.output.serving, config.name, str(version), "saved_model.pb"))
    assert os.path.isdir(os.path.join(config.output.edge, config.name, str(version)))

"""The Kubeflow image's Python environment, built the Dockerfile's way without a Docker engine: a fresh
venv with TFX 1.16 as the base image has it, the Dockerfile's COPY lines into a build context, its RUN
line, then every module of tfxline imported there, as the components' pods import them."""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "metadata", "pipeline", "components", "review", "scoring", "trainer", "monitoring",
            "schema", "serving", "tfxline", "system")


def dockerfile_steps():
    copies, runs, env = [], [], {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "COPY":
            copies.append(words[1:])
        elif words[0] == "RUN":
            runs.append(line.split(None, 1)[1])
        elif words[0] == "ENV":
            key, _, value = line.split(None, 1)[1].partition("=")
            env[key] = value
    return copies, runs, env


def test_the_image_environment_imports_every_module(tmp_path):
    copies, runs, env = dockerfile_steps()
    context = tmp_path / "tfxline"
    context.mkdir()
    for *sources, destination in copies:
        for source in sources:
            target = context / (destination if destination not in (".", "./") else source)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / source, context / source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    # What gcr.io/tfx-oss-public/tfx:1.16.0 brings: TFX and its dependencies.
    subprocess.run(pip + ["install", "-c", str(ROOT / "constraints.txt"), "tfx==1.16.0"], check=True,
                   capture_output=True, timeout=1800)
    for command in runs:
        words = shlex.split(command)
        assert words[:2] == ["pip", "install"], f"the test knows how to run pip installs only: {command}"
        result = subprocess.run(pip + words[1:], cwd=context, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stderr[-3000:]
    modules = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n    importlib.import_module(name)\n"
            "print(len(sys.argv) - 1)")
    # Run outside the build context and the repository, so only the installed packages can be found.
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code, *modules], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path, env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(len(modules))

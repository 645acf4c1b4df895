"""tfxline: a TFX 1.16 pipeline, TF Serving-compatible serving and a TFLite edge runtime."""
from setuptools import find_packages, setup

PACKAGES = ("config", "metadata", "pipeline", "components", "trainer", "monitoring", "schema", "serving")

setup(
    name="tfxline",
    version="0.1.0",
    description="Production TFX pipeline: validate, transform, train, evaluate, push, serve, edge.",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=[p for name in PACKAGES for p in (name, f"{name}.*")]),
    package_data={
        "config": ["*.yaml"],
        "schema": ["*/*.pbtxt"],
        "monitoring": ["prometheus/*.yml"],
    },
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "keras==3.6.0",
        "apache-beam[gcp]==2.59.0",
        "kfp==2.5.0",
        "tensorflow-serving-api==2.16.1",
        "ai-edge-litert",
        "pydantic>=2,<3",
        "PyYAML>=6",
        "grpcio",
        # monitoring/: the two-sample tests' distributions, Arrow columns, TFRecord checksums without TensorFlow
        # (the versions TFX 1.16's dependencies resolve to, as in constraints.txt).
        "scipy==1.12.0",
        "pyarrow==10.0.1",
        "google-crc32c==1.9.0",
        "httptools>=0.6",
        'uvloop>=0.18; sys_platform != "win32"',
    ],
    extras_require={
        "test": ["pytest", "import-linter==2.15", "ruff==0.17.6"],
        # The per-request FastAPI endpoint the serving benchmark compares against.
        "bench": ["fastapi", "uvicorn"],
    },
    entry_points={"console_scripts": ["tfxline=pipeline.cli:console_main"]},
)

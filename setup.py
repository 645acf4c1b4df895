"""tfxline: a TFX 1.16 pipeline, TF Serving-compatible serving and a TFLite edge runtime."""
from setuptools import find_packages, setup

# `tfxline` and `system` hold artifact types that TFX's entrypoint imports by name in Kubeflow pods.
PACKAGES = ("config", "metadata", "pipeline", "components", "trainer", "schema", "serving", "tfxline", "system")

setup(
    name="tfxline",
    version="0.1.0",
    description="Production TFX pipeline: validate, transform, train, evaluate, push, serve, edge.",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=[p for name in PACKAGES for p in (name, f"{name}.*")]),
    package_data={
        "config": ["*.yaml"],
        "schema": ["*/*.pbtxt"],
        "serving": ["protos/*.proto"],
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
        "httptools>=0.6",
        'uvloop>=0.18; sys_platform != "win32"',
    ],
    extras_require={
        # grpcio-tools 1.48 bundles protoc 3.19, whose generated code the pinned protobuf 3.20 loads:
        # a test regenerates serving/protos/*_pb2.py with it and compares. Its protoc module imports
        # pkg_resources, which setuptools 81 removed.
        "test": ["pytest", "import-linter==2.15", "ruff==0.17.6", "grpcio-tools==1.48.2", "setuptools<81"],
        # The per-request FastAPI endpoint the serving benchmark compares against.
        "bench": ["fastapi", "uvicorn"],
    },
    entry_points={"console_scripts": ["tfxline=pipeline.cli:console_main"]},
)

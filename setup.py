"""tfxline: a TFX 1.16 pipeline, TF Serving-compatible serving and a TFLite edge runtime."""
from setuptools import find_packages, setup

# `tfxline` and `system` hold artifact types that TFX's entrypoint imports by name in Kubeflow pods.
PACKAGES = ("config", "metadata", "pipeline", "components", "review", "scoring", "trainer", "monitoring", "schema",
            "serving", "tfxline", "system")

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
        # MQTT for `tfxline edge stream`; also in serving/edge/requirements.txt for the device.
        "paho-mqtt==2.2.0",
        # monitoring/: the two-sample tests' distributions, Arrow columns, TFRecord checksums without TensorFlow
        # (the versions TFX 1.16's dependencies resolve to, as in constraints.txt).
        "scipy==1.12.0",
        # monitoring/quality.py and sequential.py: Wilson and t intervals, Welch's difference of means.
        "statsmodels==0.14.4",
        "pyarrow==10.0.1",
        "google-crc32c==1.9.0",
        "httptools>=0.6",
        'uvloop>=0.18; sys_platform != "win32"',
    ],
    extras_require={
        # grpcio-tools 1.48 bundles protoc 3.19, whose generated code the pinned protobuf 3.20 loads:
        # a test regenerates serving/protos/*_pb2.py with it and compares. Its protoc module imports
        # pkg_resources, which setuptools 81 removed.
        # fairlearn 0.9.0: the last release that installs with pandas<2 (TFX's pin); the fairness
        # numbers are checked against it.
        # hypothesis: property-based fuzzing of the serving APIs (tests/serving/test_fuzz.py).
        "test": ["pytest", "import-linter==2.15", "ruff==0.17.6", "fairlearn==0.9.0", "nbclient", "nbformat",
                 "grpcio-tools==1.48.2", "setuptools<81", "hypothesis==6.168.5"],
        # The per-request FastAPI endpoint the serving benchmark compares against.
        "bench": ["fastapi", "uvicorn"],
    },
    entry_points={"console_scripts": ["tfxline=pipeline.cli:console_main"]},
)

"""serving/protos: TF Serving's MonitoringConfig and BatchingParameters, generated modules that
match their .proto files, and TF Serving's own text examples read through them."""
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor, text_format

from serving.model_config import parse_batching_parameters, parse_monitoring_config
from serving.protos import monitoring_config_pb2, session_bundle_config_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ("monitoring_config", "session_bundle_config")
F = descriptor.FieldDescriptor

# From tensorflow_serving/config/monitoring_config.proto and
# tensorflow_serving/servables/tensorflow/session_bundle_config.proto (tensorflow/serving 2.16.1):
# the numbers are what the binary wire format and TF Serving's own parser go by.
TF_SERVING_FIELDS = {
    "tensorflow.serving.MonitoringConfig": {"prometheus_config": (1, F.TYPE_MESSAGE, "tensorflow.serving.PrometheusConfig")},
    "tensorflow.serving.PrometheusConfig": {"enable": (1, F.TYPE_BOOL, None), "path": (2, F.TYPE_STRING, None)},
    "tensorflow.serving.BatchingParameters": {
        "max_batch_size": (1, F.TYPE_MESSAGE, "google.protobuf.Int64Value"),
        "batch_timeout_micros": (2, F.TYPE_MESSAGE, "google.protobuf.Int64Value"),
        "max_enqueued_batches": (3, F.TYPE_MESSAGE, "google.protobuf.Int64Value"),
        "num_batch_threads": (4, F.TYPE_MESSAGE, "google.protobuf.Int64Value"),
        "thread_pool_name": (5, F.TYPE_MESSAGE, "google.protobuf.StringValue"),
        "allowed_batch_sizes": (6, F.TYPE_INT64, None),
        "pad_variable_length_inputs": (7, F.TYPE_BOOL, None),
        "enable_large_batch_splitting": (8, F.TYPE_MESSAGE, "google.protobuf.BoolValue"),
        "max_execution_batch_size": (9, F.TYPE_MESSAGE, "google.protobuf.Int64Value"),
    },
}

# The examples TF Serving documents (g3doc/serving_config.md, servables/tensorflow/testdata).
MONITORING_EXAMPLES = [
    'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }',
    'prometheus_config: {\n  enable: true,\n  path: "/monitoring/prometheus/metrics"\n}\n',
]
BATCHING_EXAMPLE = """max_batch_size { value: 128 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000000 }
num_batch_threads { value: 8 }
"""


def test_the_generated_modules_are_what_protoc_makes_of_the_proto_files(tmp_path):
    sources = [f"serving/protos/{name}.proto" for name in PROTOS]
    result = subprocess.run([sys.executable, "-W", "ignore", "-m", "grpc_tools.protoc", f"-I{ROOT}",
                             f"--python_out={tmp_path}", *sources], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in PROTOS:
        generated = (tmp_path / "serving" / "protos" / f"{name}_pb2.py").read_text()
        assert generated == (ROOT / "serving" / "protos" / f"{name}_pb2.py").read_text(), (
            f"serving/protos/{name}_pb2.py is stale: run `make protos`")


def test_the_messages_have_tf_servings_package_names_and_numbers():
    messages = {**monitoring_config_pb2.DESCRIPTOR.message_types_by_name,
                **session_bundle_config_pb2.DESCRIPTOR.message_types_by_name}
    assert {message.full_name for message in messages.values()} == set(TF_SERVING_FIELDS)
    for message in messages.values():
        fields = {field.name: (field.number, field.type, field.message_type.full_name if field.message_type else None)
                  for field in message.fields}
        assert fields == TF_SERVING_FIELDS[message.full_name], message.full_name
    assert session_bundle_config_pb2.BatchingParameters.DESCRIPTOR.fields_by_name[
        "allowed_batch_sizes"].label == F.LABEL_REPEATED


@pytest.mark.parametrize("text", MONITORING_EXAMPLES)
def test_tf_servings_monitoring_examples_read_and_round_trip(text):
    assert parse_monitoring_config(text) == (True, "/monitoring/prometheus/metrics")
    parsed = text_format.Parse(text, monitoring_config_pb2.MonitoringConfig())
    assert text_format.Parse(text_format.MessageToString(parsed), monitoring_config_pb2.MonitoringConfig()) == parsed


def test_tf_servings_batching_example_reads_and_round_trips():
    parameters = parse_batching_parameters(BATCHING_EXAMPLE)
    assert {name: parameters[name] for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                                                "num_batch_threads")} == {
        "max_batch_size": 128, "batch_timeout_micros": 0, "max_enqueued_batches": 1000000, "num_batch_threads": 8}
    parsed = text_format.Parse(BATCHING_EXAMPLE, session_bundle_config_pb2.BatchingParameters())
    written = text_format.MessageToString(parsed)
    assert text_format.Parse(written, session_bundle_config_pb2.BatchingParameters()) == parsed
    assert parse_batching_parameters(written) == parameters
    # The wire format too: field 1, an Int64Value whose field 1 is 128.
    assert session_bundle_config_pb2.BatchingParameters(
        max_batch_size={"value": 128}).SerializeToString() == b"\x0a\x03\x08\x80\x01"

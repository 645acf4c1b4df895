"""The request log as the server writes it (serving/request_log.RequestLog, rotation included), read back by
monitoring/requests.py; TFRecord files damaged in the ways a crash or a copy damages them."""
import gzip
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from monitoring import requests, tfrecord
from serving.request_log import RequestLog

FEATURES = {"trip_miles": "numeric", "trip_start_hour": "categorical_int", "payment_type": "categorical_string"}


class _Servable:
    def __init__(self, version):
        self.name, self.version = "taxi", version


def _log(directory, batches, max_bytes=4000):
    log = RequestLog(str(directory), sample_rate=1.0, max_bytes=max_bytes)
    for version, rows in batches:
        inputs = {"trip_miles": np.array([r[0] for r in rows], np.float32),
                  "trip_start_hour": np.array([r[1] for r in rows], np.int64),
                  "payment_type": np.array([r[2] for r in rows], object)}
        log.record(_Servable(version), "serving_raw", inputs, {"scores": np.full((len(rows), 1), 0.25, np.float32)})
    deadline = time.time() + 30
    expected = sum(len(rows) for _, rows in batches)
    while time.time() < deadline:
        try:
            if requests.read(str(directory), "taxi", FEATURES).num_rows == expected:
                return
        except requests.RequestLogError:
            pass
        time.sleep(0.1)
    raise AssertionError("the request log did not get every sample")


def test_reads_the_servers_log_in_order_across_rotated_files(tmp_path):
    batches = [(1, [(float(i), i % 24, "Cash" if i % 3 else "Credit Card") for i in range(j, j + 20)])
               for j in range(0, 200, 20)] + [(2, [(1.5, 7, "Cash")] * 30)]
    before = time.time() * 1000
    _log(tmp_path, batches)
    assert len(requests.log_files(str(tmp_path), "taxi")) > 2  # rotated at 4,000 bytes
    result = requests.read(str(tmp_path), "taxi", FEATURES)
    assert result.num_rows == 230
    assert result.versions.tolist() == [1] * 200 + [2] * 30
    miles = result.columns["trip_miles"].values
    assert miles[:200].tolist() == [float(i) for i in range(200)] and set(miles[200:]) == {1.5}
    hours = result.columns["trip_start_hour"]
    assert hours.dtype == "INT" and hours.values[:24].tolist() == list(range(24))
    payment = result.columns["payment_type"]
    assert payment.labels[payment.values[:3]].tolist() == ["Credit Card", "Cash", "Cash"]
    assert (result.times_ms >= before - 1).all() and (np.diff(result.times_ms) >= 0).all()


def test_tfrecord_files_written_by_tensorflow_and_by_the_reader_agree(tmp_path):
    records = [f"record {i}".encode() * (i % 7 + 1) for i in range(50)]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    with tf.io.TFRecordWriter(str(tmp_path / "tf.gz"), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for record in records:
            writer.write(record)
    tfrecord.write_records(str(tmp_path / "ours.tfrecord"), records)
    assert tfrecord.read_records(str(tmp_path / "tf.tfrecord")) == records
    assert tfrecord.read_records(str(tmp_path / "tf.gz")) == records
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "ours.tfrecord"))] == records


@pytest.mark.parametrize("damage, message", [
    ("truncate", "record 9 is cut off"),
    ("flip", "record 4 fails its checksum"),
    ("gzip", "GZIP stream is damaged or cut off"),
])
def test_damaged_files_are_errors_naming_the_record(tmp_path, damage, message):
    records = [b"x" * 100] * 10
    path = tmp_path / "log.tfrecord"
    tfrecord.write_records(str(path), records)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-30]
    elif damage == "flip":
        data[4 * 116 + 12 + 50] ^= 0xFF
    else:
        data = bytearray(gzip.compress(bytes(data))[:-40])
    path.write_bytes(bytes(data))
    with pytest.raises(tfrecord.RecordError, match=message):
        tfrecord.read_records(str(path))


def test_missing_and_empty_logs_say_what_to_do(tmp_path):
    with pytest.raises(requests.RequestLogError, match="no such request log directory or file"):
        requests.read(str(tmp_path / "absent"), "taxi", FEATURES)
    with pytest.raises(requests.RequestLogError, match="no request log of model 'taxi'.*--request_log_dir"):
        requests.read(str(tmp_path), "taxi", FEATURES)
    (tmp_path / "taxi.requests.tfrecord").write_bytes(b"")
    with pytest.raises(requests.RequestLogError, match="the request log is empty"):
        requests.read(str(tmp_path), "taxi", FEATURES)
    os.remove(tmp_path / "taxi.requests.tfrecord")


def test_two_rotations_in_one_millisecond_keep_both_files(tmp_path, monkeypatch):
    log = RequestLog(str(tmp_path), sample_rate=1.0, max_bytes=4000)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    current = tmp_path / "taxi.requests.tfrecord"
    for content in (b"first", b"second"):
        current.write_bytes(content)
        log._rotate("taxi")
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == ["taxi.requests.tfrecord.1800000000000", "taxi.requests.tfrecord.1800000000001"]
    assert (tmp_path / rotated[0]).read_bytes() == b"first" and (tmp_path / rotated[1]).read_bytes() == b"second"

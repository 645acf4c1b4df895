"""A sampled log of served predictions for drift monitoring: each sampled example is written as
a tf.Example holding its raw features plus `model_version`, `request_time_ms` (when the request was
served, milliseconds since the epoch), `request_id` and `request_row` (the request's id and the
example's index in it, the key that feedback joins on) and the model's output, in TFRecord files that rotate at a size
limit (TFDV and TFMA read them as they read training data; `monitoring/requests.py` reads them for
`tfxline monitor`)."""
import logging
import os
import queue
import random
import threading
import time
from typing import Dict

import numpy as np

log = logging.getLogger("tfxline.serving")
KEEP_FILES = 10
VERSION_FEATURE = "model_version"
TIME_FEATURE = "request_time_ms"
ID_FEATURE = "request_id"
ROW_FEATURE = "request_row"
# <model>.requests.tfrecord is being written; rotated files get a millisecond-timestamp suffix.
FILE_SUFFIX = ".requests.tfrecord"


def _feature(feature, value) -> None:
    values = np.asarray(value).ravel().tolist()
    if not values:
        return
    first = values[0]
    if isinstance(first, (bytes, str)):
        feature.bytes_list.value.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
    elif isinstance(first, (bool, int)):
        feature.int64_list.value.extend(int(v) for v in values)
    else:
        feature.float_list.value.extend(float(v) for v in values)


def to_examples(version: int, inputs: Dict[str, np.ndarray], outputs: Dict[str, np.ndarray],
                time_ms: int = 0, request_id: str = "") -> list:
    """One serialized tf.Example per row. A request of serialized tf.Examples (one string input)
    is logged as those examples, with the version and outputs added."""
    from tensorflow.core.example import example_pb2

    rows = next(iter(outputs.values())).shape[0]
    examples = []
    single_string = len(inputs) == 1 and next(iter(inputs.values())).dtype == object
    for row in range(rows):
        example = example_pb2.Example()
        if single_string:
            example.ParseFromString(bytes(next(iter(inputs.values()))[row]))
        else:
            for name, value in inputs.items():
                _feature(example.features.feature[name], value[row] if np.ndim(value) else value)
        example.features.feature[VERSION_FEATURE].int64_list.value.append(version)
        example.features.feature[TIME_FEATURE].int64_list.value.append(time_ms)
        if request_id:
            example.features.feature[ID_FEATURE].bytes_list.value.append(request_id.encode())
            example.features.feature[ROW_FEATURE].int64_list.value.append(row)
        for name, value in outputs.items():
            _feature(example.features.feature[name], value[row])
        examples.append(example.SerializeToString())
    return examples


class RequestLog:
    """Sampling happens on the request path (cheap); conversion and writing on a background
    thread behind a bounded queue, so logging never slows or fails a request."""

    def __init__(self, directory: str, sample_rate: float, max_bytes: int):
        os.makedirs(directory, exist_ok=True)
        self.directory, self.sample_rate, self.max_bytes = directory, sample_rate, max_bytes
        self._queue: "queue.Queue" = queue.Queue(maxsize=1000)
        self._random = random.Random()
        threading.Thread(target=self._write_forever, name="request-log", daemon=True).start()

    def record(self, servable, signature: str, inputs, outputs, request_id: str = "") -> None:
        if self._random.random() >= self.sample_rate:
            return
        try:
            self._queue.put_nowait((servable.name, servable.version, int(time.time() * 1000), inputs, outputs,
                                    request_id))
        except queue.Full:
            log.warning("request log queue is full; dropping a sample")

    def _path(self, model: str) -> str:
        return os.path.join(self.directory, model + FILE_SUFFIX)

    def _write_forever(self) -> None:
        import tensorflow as tf

        writers = {}
        while True:
            model, version, time_ms, inputs, outputs, request_id = self._queue.get()
            try:
                path = self._path(model)
                if model not in writers:
                    writers[model] = tf.io.TFRecordWriter(path)
                for record in to_examples(version, inputs, outputs, time_ms, request_id):
                    writers[model].write(record)
                writers[model].flush()
                if os.path.getsize(path) >= self.max_bytes:
                    writers.pop(model).close()
                    self._rotate(model)
            except Exception as error:  # a bad sample must not stop the logger
                log.error("request log: %s", error)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float) -> bool:
        """Waits (up to `timeout` s) until every queued sample is written: on shutdown, so that the requests
        answered last are in the log too (their labels may arrive later). False if some were not."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks

    def _rotate(self, model: str) -> None:
        path = self._path(model)
        # Two rotations in one millisecond must not share a name: the second would replace the first file.
        stamp = int(time.time() * 1000)
        while os.path.exists(f"{path}.{stamp}"):
            stamp += 1
        os.replace(path, f"{path}.{stamp}")
        rotated = sorted(f for f in os.listdir(self.directory) if f.startswith(os.path.basename(path) + "."))
        for old in rotated[:-KEEP_FILES]:
            os.remove(os.path.join(self.directory, old))

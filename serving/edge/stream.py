"""`tfxline edge stream`: scores MQTT messages on the device with the LiteRT runtime.

A message on the input topic is one JSON object of raw features (missing ones take the model's
missing value), optionally with an id field that is echoed back. Each result goes to the output
topic as {"id": ..., "<output>": [...], "model_version": N}. A message that cannot be scored goes to
the dead-letter topic as {"reason": ..., "topic": ..., "payload": ...} (or "payload_base64" for
bytes that are not UTF-8) and the consumer carries on. Every `window_seconds` the window's
statistics (serving.window_stats) go to the stats topic.

Messages are scored in small batches: whatever has arrived while the previous batch was scored,
up to `max_batch`, so latency is bounded by one batch's scoring time and nothing waits for a
batch to fill."""
import base64
import json
import logging
import os
import queue
import threading
import time
from typing import List, Optional, Tuple

import numpy as np
import paho.mqtt.client as mqtt

from serving.edge import runtime
from serving.window_stats import WindowStats, window_of

log = logging.getLogger("tfxline.edge")


class EdgeStream:
    def __init__(self, edge_dir: str, model_name: str, host: str, port: int, input_topic: str, output_topic: str,
                 dead_letter_topic: str, stats_topic: Optional[str], window_seconds: float = 60.0,
                 variant: str = "float", id_field: str = "id", qos: int = 1, max_batch: int = 256,
                 poll_seconds: float = 5.0, client_id: str = "", username: Optional[str] = None,
                 password: Optional[str] = None):
        self.base, self.variant = os.path.join(edge_dir, model_name), variant
        self.model_name = model_name
        self.model = runtime.load_newest(self.base, variant)
        if self.model is None:
            raise runtime.EdgeModelError(f"no loadable model under {self.base}")
        self.topics = (input_topic, output_topic, dead_letter_topic, stats_topic)
        self.window_seconds, self.id_field, self.qos, self.max_batch = window_seconds, id_field, qos, max_batch
        self.poll_seconds = poll_seconds
        self.scored = self.dead_lettered = 0
        self._queue: "queue.Queue" = queue.Queue(maxsize=100_000)
        self._connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = lambda client, userdata, message: self._queue.put((message.topic, message.payload))
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._address = (host, port)
        self._window_start = window_of(time.time(), window_seconds)
        self._stats = WindowStats(self.model.inputs)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        client.subscribe(self.topics[0], qos=self.qos)  # again after every reconnect
        self._connected.set()
        log.info("subscribed to %s on %s:%d", self.topics[0], *self._address)

    def run(self, stop: threading.Event) -> None:
        self._client.connect_async(*self._address)
        self._client.loop_start()
        next_poll = time.monotonic() + self.poll_seconds
        try:
            while not stop.is_set():
                batch = self._take(timeout=0.2)
                if batch:
                    self._score(batch)
                self._flush_window(time.time())
                if time.monotonic() >= next_poll:
                    self.model = runtime.load_newest(self.base, self.variant, self.model)
                    next_poll = time.monotonic() + self.poll_seconds
        finally:
            self._flush_window(time.time(), final=True)
            self._client.disconnect()  # sent by the network loop, which then ends
            self._client.loop_stop()

    def _take(self, timeout: float) -> List[Tuple[str, bytes]]:
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _parse(self, topic: str, payload: bytes):
        """(id, features, columns) of a message, or raises BadInput with the reason."""
        try:
            message = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as error:
            raise runtime.BadInput(f"not JSON: {error}") from None
        if not isinstance(message, dict):
            raise runtime.BadInput("expected a JSON object of feature values")
        identifier = message.pop(self.id_field, None)
        return identifier, message, runtime.to_columns([message], self.model.inputs)

    def _score(self, batch: List[Tuple[str, bytes]]) -> None:
        model, good = self.model, []
        for topic, payload in batch:
            try:
                good.append(self._parse(topic, payload))
            except runtime.BadInput as error:
                self._dead_letter(topic, payload, str(error).removeprefix("row 0: "))
        if not good:
            return
        try:
            columns = {item["name"]: np.concatenate([columns[item["name"]] for _, _, columns in good])
                       for item in model.inputs}
            scores = model.run_columns(columns)[model.output]
        except Exception as error:  # a batch the interpreter refuses: never stop the consumer
            log.error("scoring a batch of %d failed: %s", len(good), error)
            for identifier, features, _ in good:
                self._dead_letter(self.topics[0], json.dumps({self.id_field: identifier, **features}).encode(),
                                  f"scoring failed: {error}")
            return
        for (identifier, features, _), row_scores in zip(good, scores):
            values = [float(value) for value in np.asarray(row_scores).reshape(-1)]
            result = {"id": identifier, model.output: values, "model_version": model.version}
            self._client.publish(self.topics[1], json.dumps(result), qos=self.qos)
            self._stats.add(features, {model.output: values})
        self.scored += len(good)

    def _dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        letter = {"reason": reason, "topic": topic}
        try:
            letter["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            letter["payload_base64"] = base64.b64encode(payload).decode()
        self._client.publish(self.topics[2], json.dumps(letter), qos=self.qos)
        self._stats.reject()
        self.dead_lettered += 1

    def _flush_window(self, now: float, final: bool = False) -> None:
        end = self._window_start + self.window_seconds
        if now < end and not final:
            return
        if self.topics[3] and (self._stats.count or self._stats.rejected):
            stats = self._stats.to_json(self.model_name, self.model.version, self._window_start,
                                        min(end, now) if final else end)
            published = self._client.publish(self.topics[3], json.dumps(stats), qos=self.qos)
            if final and self._client.is_connected():
                published.wait_for_publish(timeout=5)
        self._stats = WindowStats(self.model.inputs)
        self._window_start = window_of(now, self.window_seconds)

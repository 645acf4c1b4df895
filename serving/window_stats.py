"""Windowed monitoring statistics of a scoring stream, one JSON object per window, for drift
monitoring to consume. Both streams emit them: `tfxline stream` (Beam, event-time windows) and
`tfxline edge stream` (MQTT, processing-time windows). Pure Python and numpy: the edge runs it.

The shape (`"schema": "tfxline.window_stats/1"`):

    {"schema": "tfxline.window_stats/1", "model": "taxi", "model_version": 1796308256,
     "window_start": "2026-12-03T14:00:00Z", "window_end": "2026-12-03T14:01:00Z",
     "count": 118,                  # rows scored in the window
     "rejected": 2,                 # messages refused (dead-lettered) in the window
     "features": {
       "fare":         {"present": 117, "missing": 1, "mean": 12.41, "min": 3.25, "max": 61.0},
       "payment_type": {"present": 118, "missing": 0, "shares": {"Cash": 0.39, "Credit Card": 0.61}}},
     "outputs": {"scores": {"mean": [0.42], "min": [0.01], "max": [0.98]}}}

Numbers (float32 and int64 inputs) get present/missing counts, mean, min and max over the present
values; strings get the share of each value among the present ones (the `MAX_CATEGORIES` most
frequent, the rest summed under "__other__"). A missing value (absent, null or "") is scored as
the model's missing value and counted as missing. Means and shares are of the rows scored."""
import datetime
import math
from typing import Dict, List, Optional

import numpy as np

SCHEMA = "tfxline.window_stats/1"
MAX_CATEGORIES = 20
OTHER = "__other__"


class WindowStats:
    """An accumulator: add rows, merge accumulators (Beam combines partial ones), emit JSON."""

    def __init__(self, inputs: List[dict]):
        self.inputs = [{"name": item["name"], "dtype": item["dtype"]} for item in inputs]
        self.count = 0
        self.rejected = 0
        self.numbers: Dict[str, list] = {i["name"]: [0, 0.0, math.inf, -math.inf] for i in self.inputs
                                         if i["dtype"] != "string"}  # present, sum, min, max
        self.categories: Dict[str, Dict[str, int]] = {i["name"]: {} for i in self.inputs if i["dtype"] == "string"}
        self.outputs: Dict[str, list] = {}  # name -> [sum, min, max] arrays

    def add(self, row: dict, outputs: Dict[str, object]) -> None:
        self.count += 1
        for name, state in self.numbers.items():
            value = row.get(name)
            if value is None or value == "":
                continue
            value = float(value)
            state[0] += 1
            state[1] += value
            state[2] = min(state[2], value)
            state[3] = max(state[3], value)
        for name, counts in self.categories.items():
            value = row.get(name)
            if value is None or value == "":
                continue
            value = value.decode() if isinstance(value, bytes) else str(value)
            counts[value] = counts.get(value, 0) + 1
        for name, value in outputs.items():
            value = np.asarray(value, dtype=np.float64).reshape(-1)
            if name not in self.outputs:
                self.outputs[name] = [value.copy(), value.copy(), value.copy()]
            else:
                total, low, high = self.outputs[name]
                total += value
                np.minimum(low, value, out=low)
                np.maximum(high, value, out=high)

    def reject(self, count: int = 1) -> None:
        self.rejected += count

    def merge(self, other: "WindowStats") -> "WindowStats":
        self.count += other.count
        self.rejected += other.rejected
        for name, (present, total, low, high) in other.numbers.items():
            state = self.numbers[name]
            state[0] += present
            state[1] += total
            state[2], state[3] = min(state[2], low), max(state[3], high)
        for name, counts in other.categories.items():
            mine = self.categories[name]
            for value, count in counts.items():
                mine[value] = mine.get(value, 0) + count
        for name, (total, low, high) in other.outputs.items():
            if name not in self.outputs:
                self.outputs[name] = [total.copy(), low.copy(), high.copy()]
            else:
                state = self.outputs[name]
                state[0] = state[0] + total
                state[1], state[2] = np.minimum(state[1], low), np.maximum(state[2], high)
        return self

    def to_json(self, model: str, version: Optional[int], start: float, end: float) -> dict:
        features = {}
        for name, (present, total, low, high) in self.numbers.items():
            entry = {"present": present, "missing": self.count - present}
            if present:
                entry.update(mean=round(total / present, 6), min=low, max=high)
            features[name] = entry
        for name, counts in self.categories.items():
            present = sum(counts.values())
            ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            shares = {value: round(count / present, 6) for value, count in ranked[:MAX_CATEGORIES]}
            rest = sum(count for _, count in ranked[MAX_CATEGORIES:])
            if rest:
                shares[OTHER] = round(rest / present, 6)
            features[name] = {"present": present, "missing": self.count - present, "shares": shares}
        outputs = {name: {"mean": [round(v / self.count, 6) for v in total.tolist()],
                          "min": low.tolist(), "max": high.tolist()}
                   for name, (total, low, high) in self.outputs.items()}
        return {"schema": SCHEMA, "model": model, "model_version": version,
                "window_start": _timestamp(start), "window_end": _timestamp(end),
                "count": self.count, "rejected": self.rejected, "features": features, "outputs": outputs}


def _timestamp(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def window_of(seconds: float, length: float) -> float:
    """The start of the window (aligned to multiples of `length` since the epoch) holding `seconds`."""
    return math.floor(seconds / length) * length

"""Prometheus metrics in TF Serving's exposition: names are TF metric paths with `/` turned
into `:`, one `# TYPE` line per metric and no `# HELP` lines, latencies in microseconds. Label
values are escaped as the exposition format requires (TF Serving escapes only `\\` and `"`, so a
newline in a URL-decoded model name could forge a line), and a model name the server does not
serve is recorded as "": requests for made-up names cannot grow the number of series."""
import bisect
import threading
from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Optional, Tuple

# TF Serving's request latency buckets: 10 * 1.8^i microseconds, 33 of them.
LATENCY_BUCKETS = [10 * 1.8 ** i for i in range(33)]
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
# request_example_counts: 2^i for i < 15 (servables/tensorflow/util.cc).
EXAMPLE_COUNT_BUCKETS = [2 ** i for i in range(14)]

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
EXAMPLE_COUNTS = ":tensorflow:serving:request_example_counts"
EXAMPLE_COUNT_TOTAL = ":tensorflow:serving:request_example_count_total"
# tfxline's own: latency and count per served version and status, and executed batch sizes.
VERSION_LATENCY = ":tfxline:serving:request_latency_by_version"
BATCH_SIZE = ":tfxline:serving:batch_size"
MODEL_LABELS = ("model_name", "model")

_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def _labels(labels: Tuple[Tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{str(v).translate(_ESCAPES)}"' for k, v in labels) + "}"


class Metrics:
    def __init__(self, serves: Optional[Callable[[str], bool]] = None):
        """`serves(name)`: whether the server serves a model of that name (default: any name)."""
        self._serves = serves or (lambda name: True)
        self._lock = threading.Lock()
        self._counters: Dict[str, Dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self._histograms: Dict[str, Tuple[List[float], Dict[tuple, list]]] = {}

    def _key(self, labels: dict) -> tuple:
        for name in MODEL_LABELS:
            if labels.get(name) and not self._serves(labels[name]):
                labels[name] = ""
        return tuple(labels.items())

    def count(self, name: str, amount: float = 1, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            self._counters[name][key] += amount

    def observe(self, name: str, value: float, buckets: List[float], **labels) -> None:
        key = self._key(labels)
        with self._lock:
            _, series = self._histograms.setdefault(name, (buckets, {}))
            counts = series.setdefault(key, [0] * (len(buckets) + 1) + [0.0])
            counts[bisect.bisect_left(buckets, value)] += 1
            counts[-1] += value

    def snapshot(self) -> dict:
        """Plain data (JSON-able) that `merge` can add up across worker processes."""
        with self._lock:
            return {"counters": {name: [[list(map(list, labels)), value] for labels, value in series.items()]
                                 for name, series in self._counters.items()},
                    "histograms": {name: [buckets, [[list(map(list, labels)), list(counts)]
                                                    for labels, counts in series.items()]]
                                   for name, (buckets, series) in self._histograms.items()}}

    def exposition(self, others: Iterable[dict] = ()) -> str:
        return exposition(merge([self.snapshot(), *others]))


def merge(snapshots: Iterable[dict]) -> dict:
    counters: Dict[str, Dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
    histograms: Dict[str, Tuple[List[float], Dict[tuple, list]]] = {}
    for snapshot in snapshots:
        for name, series in snapshot["counters"].items():
            for labels, value in series:
                counters[name][tuple(map(tuple, labels))] += value
        for name, (buckets, series) in snapshot["histograms"].items():
            _, merged = histograms.setdefault(name, (buckets, {}))
            for labels, counts in series:
                total = merged.setdefault(tuple(map(tuple, labels)), [0] * len(counts))
                merged[tuple(map(tuple, labels))] = [a + b for a, b in zip(total, counts)]
    return {"counters": counters, "histograms": histograms}


def exposition(merged: dict) -> str:
    lines = []
    for name, series in sorted(merged["counters"].items()):
        lines.append(f"# TYPE {name} counter")
        lines += [f"{name}{_labels(labels)} {value:g}" for labels, value in sorted(series.items())]
    for name, (buckets, series) in sorted(merged["histograms"].items()):
        lines.append(f"# TYPE {name} histogram")
        for labels, counts in sorted(series.items()):
            cumulative = 0
            for limit, count in zip(buckets + [float("inf")], counts[:-1]):
                cumulative += count
                le = "+Inf" if limit == float("inf") else f"{limit:g}"
                lines.append(f"{name}_bucket{_labels(labels + (('le', le),))} {cumulative}")
            lines.append(f"{name}_sum{_labels(labels)} {counts[-1]:g}")
            lines.append(f"{name}_count{_labels(labels)} {cumulative}")
    return "\n".join(lines) + "\n"

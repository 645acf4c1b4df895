"""Drift alarms: false alarms on unshifted data and detection of small shifts, for tfxline's calibrated tests
and for TFDV's fixed-threshold comparators, on the same replays.

Each replay draws a reference ("training data", `--reference-rows` rows) and a window (n rows) independently,
with replacement, from the taxi rows, so both come from one distribution and any alarm is a false one. A
shifted replay then changes the window only: +0.1 standard deviations on every value of one numeric feature,
or 3 percentage points more of the most frequent value of one categorical feature. tfxline's verdict is
monitoring/compare.py's at the config's alpha (0.05 per window, alpha/features per feature); TFDV's is
tfdv.validate_statistics with the curated schema's drift comparators (JSD 0.1 numeric, L-infinity 0.1
categorical), and with every threshold at 0.01, on the same statistics.

Usage (from the repository root):
  .venv/bin/python benchmarks/drift_benchmark.py [--replays 500] [--reference-rows 50000]
"""
import argparse
import copy
import dataclasses
import functools
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import DEFAULT_CONFIG, load_config, spans  # noqa: E402
from monitoring import compare, statistics, table  # noqa: E402

WINDOW_SIZES = (1_000, 10_000, 100_000)
SHIFT_WINDOW = 10_000
NUMERIC_SHIFT_SD = 0.1
SHARE_SHIFT_POINTS = 3.0


@dataclasses.dataclass
class Population:
    config: object
    kinds: Dict[str, str]
    columns: Dict[str, table.Column]
    rows: int
    schema_path: str

    @functools.cached_property
    def schema(self):
        import tensorflow_data_validation as tfdv

        return tfdv.load_schema_text(self.schema_path)

    def draw(self, n: int, rng: np.random.Generator) -> Dict[str, table.Column]:
        rows = np.sort(rng.integers(0, self.rows, n))
        return {name: column.take(rows) for name, column in self.columns.items()}


def population(config_path: str = DEFAULT_CONFIG) -> Population:
    import csv

    config = load_config(config_path)
    files = spans.input_files(config)
    rows = []
    for path in files:
        with open(path, newline="") as handle:
            rows.extend(csv.DictReader(handle))
    kinds = {f.name: f.kind for f in config.features}
    return Population(config, kinds, table.from_rows(rows, kinds), len(rows), config.schema_.curated_path)


def shift_numeric(columns: Dict[str, table.Column], feature: str, delta: float) -> Dict[str, table.Column]:
    shifted = dict(columns)
    column = copy.copy(columns[feature])
    column.values = column.values.astype(np.float64) + delta
    column.dtype = table.FLOAT
    shifted[feature] = column
    return shifted


def shift_share(columns: Dict[str, table.Column], feature: str, label: str, points: float,
                rng: np.random.Generator) -> Dict[str, table.Column]:
    """`points` percentage points of the rows, taken from the other values, get `label` (single-valued)."""
    shifted = dict(columns)
    column = copy.copy(columns[feature])
    text = column.strings()
    present = np.flatnonzero(~column.null & (np.diff(column.offsets) > 0))
    value_index = column.offsets[:-1][present]
    others = value_index[text[value_index] != label]
    moved = rng.choice(others, size=int(round(points / 100 * column.num_rows)), replace=False)
    if column.dtype == table.STRING:
        values = column.values.copy()
        values[moved] = int(np.flatnonzero(column.labels == label)[0])
    else:
        values = column.values.copy()
        values[moved] = int(label)
    column.values = values
    shifted[feature] = column
    return shifted


def _tfdv_flags(schema, reference: statistics.Profile, window: statistics.Profile, threshold: Optional[float]):
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    if threshold is not None:
        schema = copy.deepcopy(schema)
        for feature in schema.feature:
            comparator = feature.drift_comparator
            if comparator.HasField("infinity_norm"):
                comparator.infinity_norm.threshold = threshold
            if comparator.HasField("jensen_shannon_divergence"):
                comparator.jensen_shannon_divergence.threshold = threshold
    anomalies = tfdv.validate_statistics(statistics.as_list(window.proto), schema,
                                         previous_statistics=statistics.as_list(reference.proto))
    drift_types = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
                   anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH}
    return {name for name, info in anomalies.anomaly_info.items() if any(r.type in drift_types for r in info.reason)}


def replay(pop: Population, reference_rows: int, n: int, rng: np.random.Generator, shift=None,
           with_tfdv: bool = True) -> dict:
    """One replay: {method: set of flagged features}."""
    options = statistics.Options.of(pop.config.monitoring)
    monitoring = pop.config.monitoring
    reference = statistics.profile(pop.draw(reference_rows, rng), pop.kinds, options, "reference")
    columns = pop.draw(n, rng)
    if shift is not None:
        columns = shift(columns, rng)
    window = statistics.profile(columns, pop.kinds, options, "window", align=reference)
    result = compare.compare("replay", reference, window, list(pop.kinds), monitoring.alpha,
                             monitoring.max_feature_alpha)
    flags = {"tfxline": {f.feature for f in result.drifted}}
    if with_tfdv:
        flags["tfdv_schema"] = _tfdv_flags(pop.schema, reference, window, None)
        flags["tfdv_0.01"] = _tfdv_flags(pop.schema, reference, window, 0.01)
    return flags


def shifts(pop: Population) -> Dict[str, object]:
    """The injected shifts: one numeric feature +0.1 SD, one categorical value +3 points."""
    numeric = next(f.name for f in pop.config.features if f.kind == "numeric")
    categorical = next(f.name for f in pop.config.features if f.kind == "categorical_string")
    sd = float(np.std(pop.columns[numeric].values))
    text = pop.columns[categorical].strings()
    labels, counts = np.unique(text, return_counts=True)
    top = str(labels[counts.argmax()])
    return {
        f"{numeric} +{NUMERIC_SHIFT_SD:g} SD": (
            numeric, lambda c, rng: shift_numeric(c, numeric, NUMERIC_SHIFT_SD * sd)),
        f"{categorical} '{top}' +{SHARE_SHIFT_POINTS:g} points": (
            categorical, lambda c, rng: shift_share(c, categorical, top, SHARE_SHIFT_POINTS, rng)),
    }


def rates(pop: Population, replays: int, reference_rows: int, n: int, seed: int, shift=None,
          with_tfdv: bool = True) -> Dict[str, dict]:
    """Per method: the share of (feature, replay) pairs flagged, of replays with any flag, and per feature."""
    rng = np.random.default_rng(seed)
    counts: Dict[str, Dict[str, int]] = {}
    windows: Dict[str, int] = {}
    for _ in range(replays):
        for method, flagged in replay(pop, reference_rows, n, rng, shift, with_tfdv).items():
            per_feature = counts.setdefault(method, {name: 0 for name in pop.kinds})
            for name in flagged:
                per_feature[name] += 1
            windows[method] = windows.get(method, 0) + bool(flagged)
    return {method: {"feature": sum(c.values()) / (replays * len(pop.kinds)),
                     "worst_feature": max(c.values()) / replays,
                     "window": windows[method] / replays,
                     "per_feature": {k: v / replays for k, v in c.items()}} for method, c in counts.items()}


def main(argv: Optional[List[str]] = None) -> int:
    from benchmarks.report import write_section

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replays", type=int, default=500)
    parser.add_argument("--reference-rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--no-report", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    pop = population()
    started = time.time()
    monitoring = pop.config.monitoring
    per_feature = compare.feature_alpha(monitoring.alpha, monitoring.max_feature_alpha, len(pop.kinds))
    lines = [f"{args.replays} replays per row; reference {args.reference_rows:,} rows and window n rows drawn "
             f"independently with replacement from the {pop.rows:,} taxi rows; {len(pop.kinds)} features. tfxline: "
             f"alpha {monitoring.alpha:g} per window, {per_feature:.4f} per feature. TFDV: tfdv.validate_statistics "
             f"on the same statistics with the curated schema's drift "
             f"comparators (JSD 0.1 numeric, L-infinity 0.1 categorical), and with all thresholds at 0.01.", "",
             "| data | n | tfxline feature / worst feature / window | TFDV schema (0.1) feature / window | "
             "TFDV 0.01 feature / window |", "|---|---:|---|---|---|"]

    def row(label, n, result, detected=None):
        cells = []
        for method in ("tfxline", "tfdv_schema", "tfdv_0.01"):
            r = result[method]
            if detected:
                cells.append(f"detected {100 * r['per_feature'][detected]:.1f}%")
            elif method == "tfxline":
                cells.append(f"{100 * r['feature']:.2f}% / {100 * r['worst_feature']:.1f}% / {100 * r['window']:.1f}%")
            else:
                cells.append(f"{100 * r['feature']:.2f}% / {100 * r['window']:.1f}%")
        lines.append(f"| {label} | {n:,} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)

    for n in WINDOW_SIZES:
        row("unshifted (false alarms)", n, rates(pop, args.replays, args.reference_rows, n, args.seed + n))
    for index, (label, (feature, shift)) in enumerate(shifts(pop).items()):
        row(label, SHIFT_WINDOW, rates(pop, args.replays, args.reference_rows, SHIFT_WINDOW, args.seed + index,
                                       shift), detected=feature)
    lines += ["", f"Targets: false alarms at most 1% per feature and 5% per window at every n; shifts detected at "
                  f"least 95% of the time at n = {SHIFT_WINDOW:,}. Run time {time.time() - started:.0f} s."]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_report:
        write_section(ROOT / "BENCHMARKS.md", "drift", "Drift alarms: calibrated tests vs TFDV's fixed thresholds",
                      text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

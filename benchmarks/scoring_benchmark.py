"""Batch scoring: `tfxline score` against a plain pandas loop calling the SavedModel, in one run.

On the stable version in the config's serving directory (after `tfxline run`) and CSVs made by
repeating the config's data (100k and 1M rows):
  1. `tfxline score FILE --output DIR` as installed, on the config's Beam settings (1 worker: in
     process) and on 2 worker processes (multi-processing DirectRunner);
  2. the anchor: pandas.read_csv of the whole file, then the `serving_raw` signature in batches of
     1,024 rows, the scores written with to_csv.
Each run is a fresh process (imports and model loading included); wall time, rows/s and the peak
resident memory of the process and its children (sampled every 50 ms). Prints a table and writes
the `scoring` section of BENCHMARKS.md.

Usage (from the repository root, after `tfxline run`):
  .venv/bin/python benchmarks/scoring_benchmark.py [--config F] [--rows 100000,1000000]
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from config import DEFAULT_CONFIG, load_config  # noqa: E402

TFXLINE = str(Path(sys.executable).with_name("tfxline"))
TARGET_ROWS_PER_SECOND = 50_000

PANDAS_LOOP = textwrap.dedent("""
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np, pandas as pd, tensorflow as tf
    path, model_dir, output = sys.argv[1:4]
    inputs = json.load(open(os.path.join(model_dir, "assets.extra", "raw_features.json")))
    frame = pd.read_csv(path, usecols=[i["name"] for i in inputs], keep_default_na=False, na_values=[""],
                        dtype={i["name"]: "string" for i in inputs if i["dtype"] == "string"})
    for i in inputs:
        frame[i["name"]] = frame[i["name"]].fillna(i["default"])
    signature = tf.saved_model.load(model_dir).signatures["serving_raw"]
    scores = []
    for start in range(0, len(frame), 1024):
        batch = frame.iloc[start:start + 1024]
        arguments = {i["name"]: tf.constant(batch[i["name"]].to_numpy(dtype=object if i["dtype"] == "string"
                                                                      else i["dtype"]), tf.as_dtype(i["dtype"]))
                     for i in inputs}
        scores.append(signature(**arguments)["scores"].numpy()[:, 0])
    pd.DataFrame({"row": np.arange(len(frame)), "scores": np.concatenate(scores)}).to_csv(output, index=False)
""")


def make_csv(source_dir: str, rows: int, path: Path) -> Path:
    """`rows` data rows: the config's CSV files repeated."""
    files = sorted(str(p) for p in Path(source_dir).glob("*.csv"))
    header, data = None, []
    for name in files:
        with open(name, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            data.extend(reader)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index in range(rows):
            writer.writerow(data[index % len(data)])
    return path


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.Error:
        return 0


def measure(command, cwd) -> dict:
    peak, done = [0], threading.Event()
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {err.strip()[-2000:]}")
    return {"seconds": seconds, "peak": peak[0], "stdout": out}


def _workers_config(config_path: str, directory: Path, workers: int) -> Path:
    import yaml

    from config import resolve_path

    with open(resolve_path(config_path)) as handle:
        raw = yaml.safe_load(handle)
    base = Path(resolve_path(config_path)).parent
    raw["data"]["path"] = resolve_path(raw["data"]["path"], base)
    if raw.get("schema", {}).get("curated_path"):
        raw["schema"]["curated_path"] = resolve_path(raw["schema"]["curated_path"], base)
    raw.setdefault("beam", {})["workers"] = workers
    path = directory / f"workers-{workers}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--rows", default="100000,1000000")
    args = parser.parse_args()
    config = load_config(args.config)
    from scoring.model import resolve

    serving_dir = os.path.abspath(config.output.serving)
    model = resolve(serving_dir, config.name)
    sizes = [int(size) for size in args.rows.split(",")]
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="tfxline-scoring-") as temporary:
        work = Path(temporary)
        two_workers = _workers_config(args.config, work, 2)
        for rows in sizes:
            data = make_csv(config.data.path, rows, work / f"rows-{rows}.csv")
            runs = [
                ("tfxline score (in process)", [TFXLINE, "score", str(data), "--output", str(work / f"out-{rows}-1"),
                                                "--serving-dir", serving_dir, "--config", args.config]),
                ("tfxline score (2 worker processes)", [TFXLINE, "score", str(data), "--output",
                                                        str(work / f"out-{rows}-2"), "--serving-dir", serving_dir,
                                                        "--config", str(two_workers)]),
                ("pandas loop, batches of 1,024", [sys.executable, "-c", PANDAS_LOOP, str(data), model.path,
                                                   str(work / f"pandas-{rows}.csv")]),
            ]
            for name, command in runs:
                measured = measure(command, work)
                results.append({"name": name, "rows": rows, **measured})
                print(f"{name:<36} {rows:>9,} rows {measured['seconds']:7.1f} s "
                      f"{rows / measured['seconds']:>9,.0f} rows/s  peak {measured['peak'] / 2**20:,.0f} MiB",
                      flush=True)
            data.unlink()
    load_after = os.getloadavg()

    lines = [f"Machine: {os.cpu_count()} cores, shared with other work (load average {load_before[0]:.1f} before, "
             f"{load_after[0]:.1f} after: numbers are noisy); Python {sys.version.split()[0]}; model `{model.name}` "
             f"version {model.version}; input: the config's CSV repeated. Each run is a fresh process: imports, "
             "model loading and writing the scores are included; peak memory is the resident set of the process "
             "and its children, sampled every 50 ms.", "",
             "| run | rows | wall | rows/s | peak memory |", "|---|---:|---:|---:|---:|"]
    for result in results:
        lines.append(f"| {result['name']} | {result['rows']:,} | {result['seconds']:.1f} s | "
                     f"{result['rows'] / result['seconds']:,.0f} | {result['peak'] / 2**20:,.0f} MiB |")
    by = {(r["name"], r["rows"]): r for r in results}
    largest, smallest = max(sizes), min(sizes)
    score = by[("tfxline score (in process)", largest)]
    rate = largest / score["seconds"]
    growth = score["peak"] / by[("tfxline score (in process)", smallest)]["peak"]
    pandas_growth = by[("pandas loop, batches of 1,024", largest)]["peak"] / by[
        ("pandas loop, batches of 1,024", smallest)]["peak"]
    lines += ["", "| target | measured | |", "|---|---|---|",
              f"| at least {TARGET_ROWS_PER_SECOND:,} rows/s end to end on {largest:,} rows | {rate:,.0f} rows/s | "
              f"**{'met' if rate >= TARGET_ROWS_PER_SECOND else 'not met'}** |",
              f"| memory that does not grow with the input ({smallest:,} -> {largest:,} rows) | peak x{growth:.2f} "
              f"(pandas loop x{pandas_growth:.2f}) | **{'met' if growth <= 1.2 else 'not met'}** |"]
    body = "\n".join(lines)
    print("\n" + body)
    write_section(ROOT / "BENCHMARKS.md", "scoring", "Batch scoring: tfxline score vs a pandas loop", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

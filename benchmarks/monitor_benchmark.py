"""`tfxline monitor` on 1M (and 100k) logged requests against TFDV's statistics alone on the same files.

The requests are generated in the request log's own format (serving/request_log.py: tf.Examples of the raw
taxi features with `model_version`, `request_time_ms` and `scores`, in TFRecord files rotated at the server's
default 16 MiB): rows drawn with replacement from the taxi CSV, 60% served by one version and 40% by
another, half of the second version's trips with 40x the trip_miles. Each measurement is its own process:
wall time, CPU time (user + system) and peak RSS from wait4(). tfxline's is the whole command with its
report (skew and drift of each version, JSON, the statistics protos); TFDV's is
`tfdv.generate_statistics_from_tfrecord` on the same files, DirectRunner, statistics only. Rounds
alternate the two so a busy stretch of this shared machine hits both.

Usage (from the repository root):
  .venv/bin/python benchmarks/monitor_benchmark.py [--rows 1000000 100000] [--rounds 3]
"""
import argparse
import csv
import os
import statistics as stats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import DEFAULT_CONFIG, load_config, spans  # noqa: E402
from monitoring import statistics, table, tfrecord  # noqa: E402
from serving.request_log import FILE_SUFFIX, TIME_FEATURE, VERSION_FEATURE  # noqa: E402

ROTATE_BYTES = 16 << 20
VERSIONS = (1_700_000_001, 1_700_086_401)
TFXLINE = str(Path(sys.executable).with_name("tfxline"))
TFDV_SCRIPT = ("import sys, tensorflow_data_validation as tfdv\n"
               "tfdv.generate_statistics_from_tfrecord(sys.argv[1], output_path=sys.argv[2])\n")


def _arrow(column: table.Column, rows: np.ndarray):
    import pyarrow as pa

    taken = column.take(rows)
    if taken.dtype == table.STRING:
        values = pa.array([s.encode() for s in taken.labels], pa.large_binary()).take(pa.array(taken.values))
    elif taken.dtype == table.INT:
        values = pa.array(taken.values, pa.int64())
    else:
        values = pa.array(taken.values.astype(np.float32), pa.float32())
    return pa.LargeListArray.from_arrays(pa.array(taken.offsets), values, mask=pa.array(taken.null))


def generate(directory: Path, rows: int, seed: int = 0) -> Path:
    """The request log of `rows` requests, in files as the server rotates them."""
    import pyarrow as pa
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    config = load_config(DEFAULT_CONFIG)
    source = []
    for path in spans.input_files(config):
        with open(path, newline="") as handle:
            source.extend(csv.DictReader(handle))
    kinds = {f.name: f.kind for f in config.features}
    columns = table.from_rows(source, kinds)
    rng = np.random.default_rng(seed)
    encoder = RecordBatchToExamplesEncoder()
    directory.mkdir(parents=True, exist_ok=True)
    written, part, chunk = 0, 0, 100_000
    current = directory / (config.name + FILE_SUFFIX)
    handle = open(current, "wb")
    started_ms = 1_700_000_000_000
    while written < rows:
        size = min(chunk, rows - written)
        picked = rng.integers(0, len(source), size)
        index = np.arange(written, written + size)
        version = np.where(index < 0.6 * rows, VERSIONS[0], VERSIONS[1])
        arrays, names = [], []
        for name in kinds:
            array = _arrow(columns[name], picked)
            if name == "trip_miles":
                shifted = (version == VERSIONS[1]) & (rng.random(size) < 0.5)
                values = array.flatten().to_numpy().copy()
                present = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False))
                factors = np.where(shifted[present], 40.0, 1.0).astype(np.float32)
                array = pa.LargeListArray.from_arrays(array.offsets, pa.array(values * factors),
                                                      mask=array.is_null())
            arrays.append(array)
            names.append(name)
        for name, values, kind in ((VERSION_FEATURE, version, pa.int64()),
                                   (TIME_FEATURE, started_ms + 10 * index, pa.int64()),
                                   ("scores", rng.random(size).astype(np.float32), pa.float32())):
            arrays.append(pa.LargeListArray.from_arrays(pa.array(np.arange(size + 1, dtype=np.int64)),
                                                        pa.array(values, kind)))
            names.append(name)
        for record in encoder.encode(pa.RecordBatch.from_arrays(arrays, names)):
            handle.write(tfrecord.frame(record))
            if handle.tell() >= ROTATE_BYTES:
                handle.close()
                part += 1
                os.replace(current, f"{current}.{started_ms + part}")
                handle = open(current, "wb")
        written += size
    handle.close()
    return directory


def measure(command: List[str], cwd: Path) -> dict:
    """Wall, CPU (user + system) and peak RSS of one process."""
    with open(cwd / "out.log", "w") as out:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024,
            "status": os.waitstatus_to_exitcode(status), "log": (cwd / "out.log").read_text()[-3000:],
            "load": os.getloadavg()[0]}


def training_statistics(directory: Path) -> str:
    config = load_config(DEFAULT_CONFIG)
    rows = []
    for path in spans.input_files(config):
        with open(path, newline="") as handle:
            rows.extend(csv.DictReader(handle))
    kinds = {f.name: f.kind for f in config.features}
    profile = statistics.profile(table.from_rows(rows, kinds), kinds, statistics.Options.of(config.monitoring),
                                 "training")
    return statistics.write_profile(str(directory), "train", profile)


def main(argv: Optional[List[str]] = None) -> int:
    from benchmarks.report import write_section

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tfdv-rounds", type=int, default=1, help="TFDV's runs per size (minutes each at 1M)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="monitor-benchmark-"))
    training = training_statistics(work / "training")
    results = []
    for rows in args.rows:
        log = generate(work / f"log-{rows}", rows)
        size = sum(f.stat().st_size for f in log.iterdir()) / 2 ** 20
        ours, tfdv = [], []
        for round_ in range(max(args.rounds, args.tfdv_rounds)):
            if round_ < args.rounds:
                out = work / f"out-{rows}-{round_}"
                out.mkdir()
                ours.append(measure([TFXLINE, "monitor", "--requests", str(log), "--training-stats", training,
                                     "--json", str(out / "report.json"), "--stats-dir", str(out / "stats")], out))
                print(f"{rows:,} tfxline monitor: {ours[-1]['wall']:.1f} s wall, {ours[-1]['cpu']:.1f} s CPU, "
                      f"{ours[-1]['rss_mib']:.0f} MiB, exit {ours[-1]['status']}, load {ours[-1]['load']:.1f}",
                      flush=True)
            if round_ < args.tfdv_rounds:
                out = work / f"tfdv-{rows}-{round_}"
                out.mkdir()
                tfdv.append(measure([sys.executable, "-c", TFDV_SCRIPT, str(log / "*"), str(out / "stats.pb")], out))
                print(f"{rows:,} TFDV: {tfdv[-1]['wall']:.1f} s wall, {tfdv[-1]['cpu']:.1f} s CPU, "
                      f"{tfdv[-1]['rss_mib']:.0f} MiB, exit {tfdv[-1]['status']}, load {tfdv[-1]['load']:.1f}",
                      flush=True)
        for result in ours + tfdv:
            if result["status"] not in (0, 3):
                raise SystemExit(f"a measured command failed:\n{result['log']}")
        results.append((rows, size, ours, tfdv))
    lines = [f"Machine: {os.cpu_count()} cores shared with other work (load averages during the runs are in the "
             f"table; wall times under load are noisier than CPU times). Requests generated in the request log's "
             f"format ({len(VERSIONS)} versions, 60/40, half of the second's trip_miles x40, files rotated at "
             f"16 MiB). tfxline: `tfxline monitor --training-stats ... --json ... --stats-dir ...` (skew, drift vs "
             f"previous window and vs training for each version; numpy statistics). TFDV: "
             f"`tfdv.generate_statistics_from_tfrecord` alone, Beam DirectRunner. Medians of {args.rounds} "
             f"(tfxline) and {args.tfdv_rounds} (TFDV) runs.", "",
             "| requests | log size | tfxline wall | tfxline CPU | tfxline peak RSS | TFDV wall | TFDV CPU | "
             "TFDV peak RSS | wall ratio | load (min-max) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for rows, size, ours, tfdv in results:
        median = {key: stats.median(r[key] for r in ours) for key in ("wall", "cpu", "rss_mib")}
        theirs = {key: stats.median(r[key] for r in tfdv) for key in ("wall", "cpu", "rss_mib")}
        loads = [r["load"] for r in ours + tfdv]
        lines.append(f"| {rows:,} | {size:.0f} MiB | {median['wall']:.1f} s | {median['cpu']:.1f} s | "
                     f"{median['rss_mib']:.0f} MiB | {theirs['wall']:.1f} s | {theirs['cpu']:.1f} s | "
                     f"{theirs['rss_mib']:.0f} MiB | {theirs['wall'] / median['wall']:.1f}x | "
                     f"{min(loads):.1f}-{max(loads):.1f} |")
        spread = ", ".join(f"{r['wall']:.1f}" for r in ours)
        lines.append(f"|  | tfxline runs: {spread} s |  |  |  |  |  |  |  |  |")
    lines += ["", "Targets at 1M: at most 30 s wall and 2 GiB peak RSS, at least 3x faster than TFDV's statistics."]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_report:
        write_section(ROOT / "BENCHMARKS.md", "monitor", "Monitoring: 1M logged requests to the full report", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

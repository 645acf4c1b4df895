"""The pipeline on 1x, 10x and 100x the taxi data (the 15,002-row CSV resampled with replacement:
150k and 1.5M rows), with the DirectRunner in process and with 2 worker processes, each run a fresh
`tfxline run` in fresh directories: wall time, peak memory (RSS of the process tree) and each
component's time from the run's MLMD. Target: 100x in at most 40x the 1x time, peak RSS under 4 GiB.
Prints a table and writes the `scaling` section of BENCHMARKS.md. Long: about an hour on 2 cores.

Usage: .venv/bin/python benchmarks/scaling_benchmark.py [--factors 1,10,100] [--workers 2]
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "scaling"
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_benchmark import TAXI_DATA, component_seconds, resample_csv, run_measured  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from config import resolve_path  # noqa: E402

ORDER = ["CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "AnomalyGate", "DataProfiler",
         "ServingBaseline", "DriftGate", "Transform", "Trainer", "Evaluator", "Pusher", "DriftBaselinePublisher",
         "TFLiteExport"]


def config_for(name: str, data_path: str, profile: str, workers: int) -> Path:
    with open(resolve_path("package:config/taxi.yaml")) as handle:
        raw = yaml.safe_load(handle)
    raw["data"]["path"] = data_path
    raw["schema"]["curated_path"] = resolve_path(raw["schema"]["curated_path"])
    raw["output"] = {"root": str(WORK / name)}
    raw["beam"] = {"profile": profile,
                   "profiles": {"processes": {"runner": "DirectRunner", "workers": workers}}}
    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default="1,10,100", help="data sizes, as multiples of the CSV (default 1,10,100)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the multi-processing runs")
    args = parser.parse_args(argv)
    factors = [int(f) for f in args.factors.split(",")]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    tfxline = str(Path(sys.executable).parent / "tfxline")
    load = os.getloadavg()
    data = {}
    for factor in factors:
        if factor == 1:
            data[factor] = (resolve_path(TAXI_DATA), 15002)
        else:
            rows = resample_csv(WORK / f"taxi_{factor}x", factor)
            data[factor] = (str(WORK / f"taxi_{factor}x"), rows)
    profiles = [("in_process", "in process"), ("processes", f"{args.workers} worker processes")]
    results = {}
    for factor in factors:
        for profile, _ in profiles:
            name = f"{profile}_{factor}x"
            print(f"tfxline run: {data[factor][1]:,} rows, {profile} ...", flush=True)
            wall, rss, _ = run_measured([tfxline, "run", "--config",
                                         str(config_for(name, data[factor][0], profile, args.workers))], WORK)
            results[(factor, profile)] = (wall, rss, component_seconds(str(WORK / name / "metadata.sqlite"), "taxi"))
            print(f"  {wall:.1f} s, peak RSS {rss / 2**30:.2f} GiB", flush=True)
            shutil.rmtree(WORK / name / "pipeline", ignore_errors=True)

    lines = [f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} at the start (other work shared the "
             "cores: these numbers are noisy). Each run a fresh `tfxline run` (imports included) on the taxi CSV "
             "resampled with replacement.", "",
             "| rows | Beam | wall | x the 1x run | peak RSS |", "|---:|---|---:|---:|---:|"]
    for factor in factors:
        for profile, label in profiles:
            wall, rss, _ = results[(factor, profile)]
            base = results.get((1, profile))
            scale = f"{wall / base[0]:.1f}x" if base else ""
            lines.append(f"| {data[factor][1]:,} | {label} | {wall:.1f} s | {scale} | {rss / 2**30:.2f} GiB |")
    lines += ["", "Per component (s), from MLMD:", "",
              "| component | " + " | ".join(f"{f}x {p}" for f in factors for p, _ in profiles) + " |",
              "|---|" + "---:|" * (len(factors) * len(profiles))]
    for component in ORDER:
        cells = [results[(f, p)][2].get(component) for f in factors for p, _ in profiles]
        lines.append(f"| {component} | " + " | ".join("" if c is None else f"{c:.1f}" for c in cells) + " |")
    if 100 in factors and 1 in factors:
        lines += ["", "| target | measured | |", "|---|---|---|"]
        for profile, label in profiles:
            wall, rss, _ = results[(100, profile)]
            factor = wall / results[(1, profile)][0]
            lines.append(f"| 100x in at most 40x the 1x time ({label}) | {factor:.1f}x | "
                         f"{'met' if factor <= 40 else 'NOT met'} |")
            lines.append(f"| peak RSS under 4 GiB at 100x ({label}) | {rss / 2**30:.2f} GiB | "
                         f"{'met' if rss < 4 * 2**30 else 'NOT met'} |")
    body = "\n".join(lines)
    print(body)
    write_section(ROOT / "BENCHMARKS.md", "scaling", "Scaling Beam: 1x, 10x and 100x the taxi data", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`tfxline review` on the taxi run: build time and size of the report, side by side with the same
review reading the Evaluator's output through an imported TFMA (the `review-tfma-protos` speed-up
off), in one run.

Runs the default pipeline (the shipped taxi config, 15k rows) once in benchmarks/work/review, twice so
that the Evaluator has a baseline, unless that run exists (--rerun makes a fresh one). Then, for
several rounds, alternating: `tfxline review` as a fresh process (wall time of the command, from
interpreter start to the written files) with the speed-up on, and with it off. Reports the median
and the sizes of review.html, review.json and the model card. Targets: at most 10 s and 1.5 MB.
Prints a table and writes the `review` section of BENCHMARKS.md.

Usage: .venv/bin/python benchmarks/review_benchmark.py [--rounds N] [--rerun]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "review"
TFXLINE = str(Path(sys.executable).with_name("tfxline"))
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from config import resolve_path  # noqa: E402

TARGET_SECONDS, TARGET_BYTES = 10.0, 1.5 * 2 ** 20


def prepare(rerun: bool) -> Path:
    """The shipped taxi config with its output under WORK, run twice (the second run has a baseline)."""
    config_path = WORK / "taxi.yaml"
    if rerun:
        shutil.rmtree(WORK, ignore_errors=True)
    if (WORK / "out" / "metadata.sqlite").exists():
        return config_path
    WORK.mkdir(parents=True, exist_ok=True)
    with open(resolve_path("package:config/taxi.yaml")) as handle:
        raw = yaml.safe_load(handle)
    raw["data"]["path"] = resolve_path(raw["data"]["path"])
    raw["schema"]["curated_path"] = resolve_path(raw["schema"]["curated_path"])
    raw["output"] = {"root": str(WORK / "out")}
    raw["review"] = {**raw.get("review", {}), "model_card": resolve_path("package:config/taxi.model_card.yaml")}
    config_path.write_text(yaml.safe_dump(raw))
    for _ in range(2):
        subprocess.run([TFXLINE, "run", "--config", str(config_path)], cwd=WORK, check=True,
                       stdout=subprocess.DEVNULL)
    return config_path


def review(config_path: Path, speedup: bool) -> tuple:
    env = dict(os.environ)
    env["TFXLINE_SPEEDUPS"] = "1" if speedup else "-review-tfma-protos"
    started = time.monotonic()
    result = subprocess.run([TFXLINE, "review", "--config", str(config_path)], cwd=WORK, env=env,
                            capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return wall, Path(result.stdout.strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rerun", action="store_true", help="run the pipeline again in a fresh directory")
    args = parser.parse_args(argv)
    config_path = prepare(args.rerun)
    times = {True: [], False: []}
    html_path = None
    for round_index in range(args.rounds):
        for speedup in ((True, False) if round_index % 2 == 0 else (False, True)):
            wall, html_path = review(config_path, speedup)
            times[speedup].append(wall)
    files = {name: (html_path.parent / name).stat().st_size
             for name in ("review.html", "review.json", "model_card.md", "model_card.json")}
    fast, slow = statistics.median(times[True]), statistics.median(times[False])
    report = json.loads((html_path.parent / "review.json").read_text())
    slices = len(report["slices"]["rows"]) + sum(report["slices"]["hidden"].values())
    groups = sum(len(f["groups"]) + f["hidden_groups"] for f in report["fairness"]["features"])
    rounds = {key: ", ".join(f"{t:.2f}" for t in values) for key, values in times.items()}
    rows = [
        "| | seconds (median) | rounds |",
        "|---|---:|---|",
        f"| `tfxline review` (TFMA's protos without TFMA) | {fast:.2f} | {rounds[True]} |",
        f"| the same with TFMA imported (speed-up off) | {slow:.2f} | {rounds[False]} |",
        "",
        "| file | bytes |",
        "|---|---:|",
    ] + [f"| {name} | {size:,} |" for name, size in files.items()]
    verdict = (f"Target: at most {TARGET_SECONDS:.0f} s and {TARGET_BYTES / 2 ** 20:.1f} MB: "
               f"{'met' if fast <= TARGET_SECONDS and files['review.html'] <= TARGET_BYTES else 'NOT met'} "
               f"({fast:.2f} s, {files['review.html'] / 2 ** 20:.2f} MB); with TFMA imported {slow / fast:.1f}x "
               "slower. The command's whole wall time, interpreter start included, on the shipped taxi config's "
               f"second run ({sum(report['summary']['rows'].values()):,} rows, a baseline, {slices} slices, "
               f"{groups} company and payment-type groups).")
    text = "\n".join(rows) + "\n\n" + verdict + "\n"
    print(text)
    write_section(ROOT / "BENCHMARKS.md", "review", "Review: tfxline review on the taxi run", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

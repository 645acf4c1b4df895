"""The Kubeflow paths against their local anchors, side by side in one run, on the default taxi CSV:

  1. the compiled spec run task by task as Kubeflow runs it (pipeline/spec_runner.py: every task a
     fresh process, as a pod is) against `tfxline run` (LocalDagRunner, in process), both with the
     Beam work in process; alternately, for several rounds. Start-up is measured apart: for every
     task, a fresh process that only imports TFX's V2 entrypoint and the task's executor class;
  2. `tfxline run` on Beam's portable runner (the Python job service and an SDK worker pool, each a
     process on a loopback port) against `tfxline run` on the DirectRunner, alternately.
Targets: the spec runner within 3x the LocalDagRunner's wall time, portable within 2x DirectRunner.
Prints a table and writes the `kubeflow` section of BENCHMARKS.md.

Usage: .venv/bin/python benchmarks/kubeflow_benchmark.py [--rounds N]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "kubeflow"
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_benchmark import TAXI_DATA, run_measured  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from config import resolve_path  # noqa: E402

BUCKET = "gs://benchmark-bucket/tfxline"
KUBEFLOW = {"image": "tfxline:benchmark", "pipeline_root": f"{BUCKET}/pipeline", "data_path": f"{BUCKET}/data",
            "schema_path": f"{BUCKET}/schema/schema.pbtxt", "serving_dir": f"{BUCKET}/serving",
            "edge_dir": f"{BUCKET}/edge", "beam_profile": "in_process"}


def write_config(name: str, **sections) -> Path:
    with open(resolve_path("package:config/taxi.yaml")) as handle:
        raw = yaml.safe_load(handle)
    raw["data"]["path"] = resolve_path(TAXI_DATA)
    raw["schema"]["curated_path"] = resolve_path(raw["schema"]["curated_path"])
    raw["output"] = {"root": str(WORK / name)}
    raw["kubeflow"] = {**raw["kubeflow"], **KUBEFLOW}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def local_run(name: str, **sections) -> float:
    wall, _, _ = run_measured([str(Path(sys.executable).parent / "tfxline"), "run", "--config",
                               str(write_config(name, **sections))], WORK)
    return wall


def spec_run(spec: dict, name: str):
    from pipeline import spec_runner

    store = spec_runner.ObjectStore(str(WORK / name))
    data = store.local(KUBEFLOW["data_path"])
    os.makedirs(data)
    shutil.copy(os.path.join(resolve_path(TAXI_DATA), "data.csv"), data)
    schema = store.local(KUBEFLOW["schema_path"])
    os.makedirs(os.path.dirname(schema))
    shutil.copy(resolve_path("package:schema/taxi/schema.pbtxt"), schema)
    started = time.monotonic()
    run = spec_runner.SpecRunner(spec, store, KUBEFLOW["pipeline_root"]).run()
    return time.monotonic() - started, run


def start_up_seconds(spec: dict) -> dict:
    """Per task: a fresh process importing TFX's V2 entrypoint and the task's executor, nothing more."""
    seconds = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        component = spec["components"][task["componentRef"]["name"]]
        args = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]["args"]
        executor = args[args.index("--executor_class_path") + 1]
        code = ("import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor\n"
                f"from tfx.utils import import_utils\nimport_utils.import_class_by_path({executor!r})\n")
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
        seconds[name] = time.monotonic() - started
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each comparison (default 2)")
    args = parser.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    from config import load_config
    from pipeline import kubeflow
    from tests import beam_services

    spec = kubeflow.build_spec(load_config(str(write_config("compile"))))
    load = os.getloadavg()

    spec_rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: tfxline run (LocalDagRunner), the spec runner ...", flush=True)
        pair = {}
        for kind in (["local", "spec"] if index % 2 == 0 else ["spec", "local"]):
            if kind == "local":
                pair[kind] = local_run(f"local_{index}")
            else:
                pair[kind], run = spec_run(spec, f"spec_{index}")
                pair["tasks"] = {name: task.seconds for name, task in run.tasks.items()}
        spec_rounds.append(pair)
        print(f"  local {pair['local']:.1f} s, spec runner {pair['spec']:.1f} s", flush=True)
    print("start-up of every task's process ...", flush=True)
    start_up = start_up_seconds(spec)

    jobs = beam_services.job_service(WORK)
    workers = beam_services.worker_pool(WORK)
    portable = {"profile": "portable", "profiles": {"portable": beam_services.portable_profile(jobs, workers)}}
    portable_rounds = []
    try:
        for index in range(args.rounds):
            print(f"round {index + 1}/{args.rounds}: tfxline run on DirectRunner, on the portable runner ...",
                  flush=True)
            pair = {}
            for kind in (["direct", "portable"] if index % 2 == 0 else ["portable", "direct"]):
                pair[kind] = local_run(f"{kind}_{index}", **({"beam": portable} if kind == "portable" else {}))
            portable_rounds.append(pair)
            print(f"  DirectRunner {pair['direct']:.1f} s, portable {pair['portable']:.1f} s", flush=True)
    finally:
        workers.stop()
        jobs.stop()

    spec_ratio = statistics.median(r["spec"] / r["local"] for r in spec_rounds)
    portable_ratio = statistics.median(r["portable"] / r["direct"] for r in portable_rounds)
    tasks = {name: statistics.median(r["tasks"][name] for r in spec_rounds) for name in spec_rounds[0]["tasks"]}
    start_up_total, task_total = sum(start_up.values()), sum(tasks.values())
    lines = [
        f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} at the start (other work shared the cores; "
        f"the numbers are noisy). Data: the default taxi CSV, 15,002 rows. {args.rounds} rounds of each pair, "
        "back to back, the order alternating.",
        "",
        "| round | `tfxline run` (LocalDagRunner) | spec runner (a process per task) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for index, r in enumerate(spec_rounds):
        lines.append(f"| {index + 1} | {r['local']:.1f} s | {r['spec']:.1f} s | {r['spec'] / r['local']:.2f} |")
    lines += [
        "",
        "Per task (median over the rounds): the task's whole time, and the start-up of its process alone (a "
        "fresh process importing TFX's V2 entrypoint and the task's executor class). Tasks whose inputs are ready "
        "run at the same time, as the backend starts them, so the run is shorter than the sum.",
        "",
        "| task | task time | of which start-up |",
        "|---|---:|---:|",
    ]
    for name in tasks:
        lines.append(f"| {name} | {tasks[name]:.1f} s | {start_up[name]:.1f} s |")
    lines += [f"| all tasks | {task_total:.1f} s | {start_up_total:.1f} s ({start_up_total / task_total:.0%}) |", "",
              "| round | DirectRunner (in process) | portable (job service + worker pool) | ratio |",
              "|---|---:|---:|---:|"]
    for index, r in enumerate(portable_rounds):
        lines.append(f"| {index + 1} | {r['direct']:.1f} s | {r['portable']:.1f} s | "
                     f"{r['portable'] / r['direct']:.2f} |")
    targets = [("spec runner within 3x the LocalDagRunner (median ratio)", f"{spec_ratio:.2f}", spec_ratio <= 3),
               ("portable runner within 2x DirectRunner (median ratio)", f"{portable_ratio:.2f}", portable_ratio <= 2)]
    lines += ["", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'met' if ok else 'NOT met'} |" for name, value, ok in targets]
    body = "\n".join(lines)
    print(body)
    write_section(ROOT / "BENCHMARKS.md", "kubeflow", "Kubeflow: the spec runner and portable Beam vs local runs",
                  body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

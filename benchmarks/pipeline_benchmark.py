"""tfxline's pipeline against TFX's own taxi template, side by side in one run.

Runs, each as a fresh process on this machine and the default 15k-row taxi CSV:
  1. TFX's taxi template (tfx/experimental/templates/taxi from the installed wheel) with every
     `components.append` it ships commented out enabled, `tfxline run` with the shipped config,
     and `tfxline run` with TFXLINE_SPEEDUPS=0, in turn, for several rounds (each first run in
     fresh directories; the order rotates every round). This machine's speed drifts by tens of
     percent within minutes, so the comparison is the median of the per-round ratios, each from
     back-to-back runs;
  2. `tfxline run` twice more on the last round's output (the second re-run is fully cached);
  3. `tfxline run` on a 10x input made by resampling the CSV, next to one more 1x run.
Reports wall time, peak memory (RSS of the process tree), per-component times from each
pipeline's MLMD, and AUC/accuracy of both trained models on the same held-out rows.
Prints a table and writes the `pipeline` section of BENCHMARKS.md.

Usage: .venv/bin/python benchmarks/pipeline_benchmark.py [--rounds N] [--skip-10x]
"""
import argparse
import csv
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from config import resolve_path  # noqa: E402

TEMPLATE = "package:tfx/experimental/templates/taxi"
TAXI_DATA = "package:tfx/examples/chicago_taxi_pipeline/data/simple"


def run_measured(command, cwd, env=None):
    """Runs a command; returns (wall seconds, peak RSS of its process tree in bytes, output)."""
    log_path = Path(cwd) / f"run-{time.time_ns()}.log"
    log = open(log_path, "w")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    peak = 0
    parent = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [parent] + parent.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.monotonic() - started
    log.close()
    output = log_path.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{output[-3000:]}")
    return wall, peak, output


def prepare_template(work: Path) -> Path:
    """A runnable copy of TFX's taxi template with all of its components enabled."""
    source = Path(resolve_path(TEMPLATE))
    package = work / "taxi_template"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__", "*.ipynb", "e2e_tests"))
    pipeline_py = package / "pipeline" / "pipeline.py"
    pipeline_py.write_text(re.sub(r"#\s*components\.append\(", "components.append(", pipeline_py.read_text()))
    configs = package / "pipeline" / "configs.py"
    text = configs.read_text().replace("{{PIPELINE_NAME}}", "taxi_template")
    text = text.replace("'models.", "'tfx.experimental.templates.taxi.models.")
    # The template looks up Google Cloud credentials at import (a metadata-server probe that
    # hangs offline); a local run needs no project.
    text = re.sub(r"try:\n  import google\.auth.*?except ImportError:\n  GOOGLE_CLOUD_PROJECT = ''\n",
                  "GOOGLE_CLOUD_PROJECT = ''\n", text, flags=re.S)
    configs.write_text(text)
    runner = package / "local_runner.py"
    runner.write_text(runner.read_text().replace("tfx.experimental.templates.taxi.pipeline", "taxi_template.pipeline"))
    os.symlink(resolve_path(TAXI_DATA), package / "data")
    return package


def tfxline_config(work: Path, name: str, data_path: str) -> Path:
    with open(resolve_path("package:config/taxi.yaml")) as handle:
        raw = yaml.safe_load(handle)
    raw["data"]["path"] = data_path
    raw["schema"]["curated_path"] = resolve_path(raw["schema"]["curated_path"])
    raw["output"] = {"root": str(work / name)}
    path = work / f"{name}.yaml"
    # Keys in the shipped order: the order of split_buckets decides which hash buckets are eval.
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def resample_csv(destination: Path, factor: int, seed: int = 11) -> int:
    with open(os.path.join(resolve_path(TAXI_DATA), "data.csv"), newline="") as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    sample = random.Random(seed).choices(rows, k=len(rows) * factor)
    destination.mkdir(parents=True, exist_ok=True)
    with open(destination / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(sample)
    return len(sample)


def _store(metadata_path: str):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    return metadata_store.MetadataStore(metadata_store_pb2.ConnectionConfig(
        sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(filename_uri=metadata_path)))


def component_seconds(metadata_path: str, pipeline_name: str) -> dict:
    """Each component's time in the pipeline's first run (later runs may be cached)."""
    from metadata import runs

    return {name: executions[0].last_update_time_since_epoch / 1000 - executions[0].create_time_since_epoch / 1000
            for name, executions in runs.executions_by_component(_store(metadata_path), pipeline_name).items()
            if name}


def output_uri(metadata_path: str, pipeline_name: str, component: str, key: str, base: Path) -> str:
    """Where the latest run's component wrote an output (relative URIs are relative to `base`)."""
    from metadata import runs

    store = _store(metadata_path)
    return str(base / runs.latest_run(store, pipeline_name)[component].output(key).uri)


def _canonical(record: bytes) -> tuple:
    import tensorflow as tf

    features = tf.train.Example.FromString(record).features.feature
    return tuple(sorted((name, str(getattr(f, f.WhichOneof("kind")).value) if f.WhichOneof("kind") else "")
                        for name, f in features.items()))


def eval_records(examples_uri: str) -> dict:
    """Eval-split records by content (serialized bytes differ between runs: map order)."""
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*"))
    return {_canonical(r.numpy()): r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")}


def score(model_path: str, records: list):
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(model_path).signatures["serving_default"]
    outputs = []
    for start in range(0, len(records), 512):
        result = signature(examples=tf.constant(records[start:start + 512]))
        outputs.append(next(iter(result.values())).numpy().reshape(-1))
    scores = np.concatenate(outputs)
    if scores.min() < 0 or scores.max() > 1:  # the template's model outputs logits
        scores = 1 / (1 + np.exp(-scores))
    return scores


def labels(records: list):
    import numpy as np
    import tensorflow as tf

    result = []
    for record in records:
        feature = tf.train.Example.FromString(record).features.feature
        fare = feature["fare"].float_list.value
        tips = feature["tips"].float_list.value
        result.append(int(bool(fare) and bool(tips) and tips[0] > 0.2 * fare[0]))
    return np.array(result)


def auc_and_accuracy(y, scores):
    from sklearn.metrics import accuracy_score, roc_auc_score

    return roc_auc_score(y, scores), accuracy_score(y, scores >= 0.5)


def _median_components(runs: list) -> dict:
    names = sorted({name for run in runs for name in run})
    return {name: statistics.median(run[name] for run in runs if name in run) for name in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="template/tfxline pairs (default 3)")
    parser.add_argument("--skip-10x", action="store_true", help="skip the 10x-input run")
    args = parser.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    python = sys.executable
    tfxline = str(Path(python).parent / "tfxline")
    env = {**os.environ, "PYTHONPATH": str(WORK), "TF_CPP_MIN_LOG_LEVEL": "3"}
    prepare_template(WORK)

    def run_template(index):
        directory = WORK / f"template_run_{index}"
        directory.mkdir()
        wall, rss, _ = run_measured([python, "-m", "taxi_template.local_runner"], directory, env)
        db = str(directory / "tfx_metadata" / "taxi_template" / "metadata.db")
        return {"wall": wall, "rss": rss, "dir": directory, "db": db,
                "components": component_seconds(db, "taxi_template")}

    def run_tfxline(name, data_path, speedups="1"):
        config = tfxline_config(WORK, name, data_path)
        wall, rss, _ = run_measured([tfxline, "run", "--config", str(config)], WORK,
                                    {**os.environ, "TFXLINE_SPEEDUPS": speedups})
        db = str(WORK / name / "metadata.sqlite")
        return {"wall": wall, "rss": rss, "config": config, "db": db, "components": component_seconds(db, "taxi")}

    rounds, plain_runs = [], []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: TFX's taxi template, tfxline, tfxline without speed-ups ...",
              flush=True)
        runs = {}
        order = ["template", "tfxline", "plain"]
        for kind in order[index % 3:] + order[:index % 3]:
            if kind == "template":
                runs[kind] = run_template(index)
            else:
                runs[kind] = run_tfxline(f"{kind}_{index}", resolve_path(TAXI_DATA), "1" if kind == "tfxline" else "0")
        rounds.append((runs["template"], runs["tfxline"]))
        plain_runs.append(runs["plain"])
        print(f"  template {runs['template']['wall']:.1f} s, tfxline {runs['tfxline']['wall']:.1f} s, "
              f"without speed-ups {runs['plain']['wall']:.1f} s", flush=True)
    template, ours = rounds[-1]

    print("re-running tfxline twice (cached) ...", flush=True)
    rerun_wall, _, _ = run_measured([tfxline, "run", "--config", str(ours["config"])], WORK)
    cached_wall, _, cached_output = run_measured([tfxline, "run", "--config", str(ours["config"])], WORK)

    big = None
    if not args.skip_10x:
        print("running tfxline on the 10x input, and once more on the 1x input ...", flush=True)
        rows = resample_csv(WORK / "taxi_10x", 10)
        big_run = run_tfxline("tfxline_10x", str(WORK / "taxi_10x"))
        small_run = run_tfxline("tfxline_1x_beside_10x", resolve_path(TAXI_DATA))
        big = (rows, big_run, small_run)

    template_eval = eval_records(output_uri(template["db"], "taxi_template", "CsvExampleGen", "examples",
                                            template["dir"]))
    tfxline_eval = eval_records(output_uri(ours["db"], "taxi", "CsvExampleGen", "examples", WORK))
    # Rows neither model trained on: in both pipelines' eval splits.
    common = [tfxline_eval[key] for key in sorted(set(template_eval) & set(tfxline_eval))]
    y = labels(common)
    template_model = os.path.join(output_uri(template["db"], "taxi_template", "Trainer", "model", template["dir"]),
                                  "Format-Serving")
    tfxline_model = os.path.join(output_uri(ours["db"], "taxi", "Trainer", "model", WORK), "Format-Serving")
    template_auc, template_acc = auc_and_accuracy(y, score(template_model, common))
    tfxline_auc, tfxline_acc = auc_and_accuracy(y, score(tfxline_model, common))

    template_walls = [t["wall"] for t, _ in rounds]
    tfxline_walls = [o["wall"] for _, o in rounds]
    ratios = [o["wall"] / t["wall"] for t, o in rounds]
    ratio = statistics.median(ratios)
    lines = [
        f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; data: taxi CSV, 15,002 rows. "
        f"Each run is a fresh process (imports included). {args.rounds} rounds of one template run, one "
        f"tfxline run and one tfxline run with TFXLINE_SPEEDUPS=0, back to back (the order rotates every round).",
        "",
        "| round | TFX taxi template | tfxline | tfxline / template | tfxline without speed-ups | its ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    plain_ratios = [p["wall"] / t["wall"] for (t, _), p in zip(rounds, plain_runs)]
    for index, ((t, o), p) in enumerate(zip(rounds, plain_runs)):
        lines.append(f"| {index + 1} | {t['wall']:.1f} s | {o['wall']:.1f} s | {o['wall'] / t['wall']:.2f} | "
                     f"{p['wall']:.1f} s | {p['wall'] / t['wall']:.2f} |")
    lines += [
        f"| median | {statistics.median(template_walls):.1f} s | {statistics.median(tfxline_walls):.1f} s | "
        f"{ratio:.2f} | {statistics.median(p['wall'] for p in plain_runs):.1f} s | "
        f"{statistics.median(plain_ratios):.2f} |",
        "",
        "| | TFX taxi template | tfxline |",
        "|---|---:|---:|",
        f"| peak memory (RSS, highest round) | {max(t['rss'] for t, _ in rounds) / 2**30:.2f} GiB | "
        f"{max(o['rss'] for _, o in rounds) / 2**30:.2f} GiB |",
        f"| eval AUC (same {len(common):,} held-out rows) | {template_auc:.4f} | {tfxline_auc:.4f} |",
        f"| eval accuracy (same rows) | {template_acc:.4f} | {tfxline_acc:.4f} |",
        f"| re-run (the Evaluator checks the model against the baseline that now exists) | | {rerun_wall:.1f} s |",
        f"| second re-run (every execution cached) | | {cached_wall:.1f} s |",
    ]
    if big:
        rows, big_run, small_run = big
        lines.append(f"| 10x input ({rows:,} rows), first run | | {big_run['wall']:.1f} s "
                     f"({big_run['wall'] / small_run['wall']:.1f}x the {small_run['wall']:.1f} s of a 1x run "
                     f"right after it), {big_run['rss'] / 2**30:.2f} GiB |")
    template_components = _median_components([t["components"] for t, _ in rounds])
    tfxline_components = _median_components([o["components"] for _, o in rounds])
    lines += ["", "Per-component time from each pipeline's MLMD (execution registered to published), median "
              "over the rounds:", "", "| component | template | tfxline |", "|---|---:|---:|"]
    for name in sorted(set(template_components) | set(tfxline_components)):
        left = template_components.get(name)
        right = tfxline_components.get(name)
        lines.append(f"| {name} | {'' if left is None else f'{left:.1f} s'} | "
                     f"{'' if right is None else f'{right:.1f} s'} |")
    summary_line = next(line for line in cached_output.splitlines() if "Summary" in line)
    lines += ["", f"Cached re-run summary line: `{summary_line}`"]
    targets = [
        ("wall time at most half the template's (median of the rounds' ratios)", f"{ratio:.2f}", ratio <= 0.5),
        ("within 10% of the 0.49 median ratio measured before the house change (at most 0.54)", f"{ratio:.2f}",
         ratio <= 0.54),
        ("eval AUC and accuracy at least the template's", f"AUC {tfxline_auc:.4f} vs {template_auc:.4f}, "
         f"accuracy {tfxline_acc:.4f} vs {template_acc:.4f}",
         tfxline_auc >= template_auc and tfxline_acc >= template_acc),
        ("fully cached re-run under 15 s", f"{cached_wall:.1f} s", cached_wall < 15),
    ]
    if big:
        factor = big[1]["wall"] / big[2]["wall"]
        targets.append(("10x input in at most 5x the time", f"{factor:.1f}x", factor <= 5))
    lines += ["", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'**met**' if met else '**not met**'} |" for name, value, met in targets]
    text = "\n".join(lines)
    print(text)
    write_section(ROOT / "BENCHMARKS.md", "pipeline", "Pipeline: tfxline vs TFX's taxi template", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

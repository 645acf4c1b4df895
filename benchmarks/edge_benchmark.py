"""Edge: the SavedModel (TensorFlow) against its TFLite models (LiteRT), in one run.

On the newest version published to the edge directory and its SavedModel in the serving directory:
  1. single-example latency p50/p99 (2,000 calls after 200 warm-up calls, rows from the eval split)
     and batch-of-256 throughput, for the SavedModel's `serving_raw` signature called with
     TensorFlow and for the float and quantized TFLite models in the LiteRT interpreter, both
     called directly and through the edge runtime's `predict()` (row dicts in, as on the device);
  2. file sizes, and where the bytes of each .tflite file go;
  3. install sizes: a fresh venv with serving/edge/requirements.txt and tfxline (--no-deps), where
     `tfxline edge predict` must score a CSV with no TensorFlow installed, against a fresh venv
     with tensorflow==2.16.2.
Prints a table and writes the `edge` section of BENCHMARKS.md.

Usage (from the repository root, after `tfxline run`):
  .venv/bin/python benchmarks/edge_benchmark.py [--config F] [--python PYTHON3.10]
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from config import DEFAULT_CONFIG, load_config  # noqa: E402

EDGE_REQUIREMENTS = ROOT / "serving" / "edge" / "requirements.txt"
TENSORFLOW = "tensorflow==2.16.2"
# What setup.py packages: copied to a scratch directory so building tfxline leaves no build/ here.
TFXLINE_SOURCES = ("setup.py", "config", "pipeline", "components", "trainer", "schema", "serving")
SINGLE_CALLS, WARMUP_CALLS, BATCH, BATCH_SECONDS = 2000, 200, 256, 3.0
QUANTIZER = "ai-edge-quantizer==0.10.0"
# ai-edge-quantizer's recipes for the same float model with fewer bits per weight (TF 2.16's
# converter goes no lower than int8): how small quantization alone can make the file.
FEWER_BITS = {"int8": "weight_only_wi8_afp32", "int4": "dynamic_wi4c_afp32", "2-bit": "dynamic_wi2c_afp32"}
TARGET_SPEEDUP, TARGET_QUANT_RATIO, TARGET_INSTALL_RATIO = 10.0, 0.25, 0.10


def newest_version(config) -> str:
    from serving import layout

    versions = layout.edge_versions(layout.join(config.output.edge, config.name))
    if not versions:
        sys.exit(f"edge_benchmark: nothing published under {config.output.edge}/{config.name}; run `tfxline run`")
    return str(versions[-1])


def eval_records(config, limit: int) -> list:
    from components.tflite_export.executor import eval_examples
    from metadata import runs, store

    run = runs.latest_run(store.open_store(config), config.name)
    return eval_examples(run["CsvExampleGen"].output("examples").uri, limit)


def single_latency_ms(call, inputs: list):
    for item in inputs[:WARMUP_CALLS]:
        call(item)
    durations = []
    for item in inputs:
        started = time.perf_counter()
        call(item)
        durations.append(time.perf_counter() - started)
    return np.percentile(durations, 50) * 1e3, np.percentile(durations, 99) * 1e3


def throughput(call, batches: list) -> float:
    """Examples per second over BATCH_SECONDS of back-to-back batch calls, after one warm-up
    call (LiteRT reallocates its tensors when the batch size changes)."""
    call(batches[0])
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < BATCH_SECONDS:
        call(batches[calls % len(batches)])
        calls += 1
    return calls * BATCH / (time.perf_counter() - started)


def as_rows(columns: dict) -> list:
    """Columns as the row dicts a device sends: plain Python values, strings as str."""
    count = len(next(iter(columns.values())))
    return [{name: values[i].decode() if isinstance(values[i], bytes) else values[i].item()
             for name, values in columns.items()} for i in range(count)]


def signature_runner_call(path: str):
    """LiteRT's SignatureRunner, the usual way to call a signature: every call resizes each input
    and re-allocates the tensors before invoking (serving/edge/runtime.py avoids that)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_raw")
    return lambda columns: runner(**columns)["scores"]


def allocated_once_call(path: str):
    """set_tensor/invoke on the same interpreter, resizing and re-allocating only when the
    batch size changes: what the model itself costs in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_raw")
    inputs = {name: detail["index"] for name, detail in runner.get_input_details().items()}
    output = runner.get_output_details()["scores"]["index"]
    allocated_rows = [None]

    def call(columns):
        rows = len(next(iter(columns.values())))
        if rows != allocated_rows[0]:
            for index in inputs.values():
                interpreter.resize_tensor_input(index, [rows])
            interpreter.allocate_tensors()
            allocated_rows[0] = rows
        for name, values in columns.items():
            interpreter.set_tensor(inputs[name], values)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return call


def measure_models(saved_model_dir: str, version_dir: str, columns: dict) -> list:
    """(name, p50 ms, p99 ms, examples/s) for each way of calling the model."""
    import tensorflow as tf

    from serving.edge import runtime

    count = len(next(iter(columns.values())))
    single = [{name: values[i:i + 1] for name, values in columns.items()} for i in range(count)]
    batches = [{name: values[i:i + BATCH] for name, values in columns.items()}
               for i in range(0, count - BATCH + 1, BATCH)]

    def as_tensors(inputs):
        return {name: tf.constant(values) for name, values in inputs.items()}

    def measured(name, call, single_inputs, batch_inputs):
        return (name, *single_latency_ms(call, single_inputs), throughput(call, batch_inputs))

    signature = tf.saved_model.load(saved_model_dir).signatures["serving_raw"]
    results = [measured(f"SavedModel `serving_raw`, TensorFlow {tf.__version__}",
                        lambda inputs: signature(**inputs)["scores"].numpy(),
                        [as_tensors(x) for x in single], [as_tensors(x) for x in batches])]
    for variant, label in (("float", "TFLite float"), ("quantized", "TFLite quantized (dynamic range)")):
        path = os.path.join(version_dir, runtime.VARIANTS[variant])
        model = runtime.load(version_dir, variant)
        results += [
            measured(f"{label}, LiteRT SignatureRunner", signature_runner_call(path), single, batches),
            measured(f"{label}, LiteRT set_tensor/invoke, allocated once", allocated_once_call(path), single, batches),
            measured(f"{label}, edge runtime `predict()` on row dicts", model.predict,
                     [as_rows(x) for x in single], [as_rows(x) for x in batches]),
        ]
    return results


def directory_bytes(path) -> int:
    return sum(os.lstat(os.path.join(folder, name)).st_size
               for folder, _, names in os.walk(path) for name in names)


def tflite_bytes_by_kind(path: str) -> dict:
    """A .tflite file's bytes: constant tensors by the op that reads them, the tensors' debug
    names, and the rest (ops, tensor and buffer tables, signature, metadata)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    op_names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    kinds = {"FULLY_CONNECTED": "dense weights", "GATHER": "embeddings", "HASHTABLE_IMPORT": "vocabularies"}
    model = flatbuffer_utils.read_model(path)
    result = {kind: 0 for kind in (*kinds.values(), "other constants", "tensor names")}
    counted = set()
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = kinds.get(op_names[max(code.builtinCode, code.deprecatedBuiltinCode)], "other constants")
            for index in op.inputs:
                buffer = graph.tensors[index].buffer if index >= 0 else 0
                if buffer not in counted and model.buffers[buffer].data is not None:
                    counted.add(buffer)
                    result[kind] += len(model.buffers[buffer].data)
        result["tensor names"] += sum(len(tensor.name or b"") for tensor in graph.tensors)
    result["graph, signature, metadata"] = os.path.getsize(path) - sum(result.values())
    return result


def pyenv_python() -> str:
    """pyenv's Python 3.10.13 (what `pyenv root` reports, without needing the shim on PATH)."""
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    return os.path.join(pyenv_root, "versions", "3.10.13", "bin", "python")


def fresh_venv(python: str, directory: Path, *pip_args) -> Path:
    """A venv without pip of its own (so site-packages holds only what is installed into it),
    filled by this environment's pip; pip's cache is shared."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(directory)], check=True)
    target = directory / "bin" / "python"
    for args in pip_args:
        subprocess.run([sys.executable, "-m", "pip", "--python", str(target), "install", "--quiet",
                        "--disable-pip-version-check", *args], check=True)
    return directory


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def installed_packages(venv: Path) -> int:
    return len(list(site_packages(venv).glob("*.dist-info")))


def edge_install(python: str, scratch: Path, edge_dir: str, model_name: str, rows: list) -> dict:
    """The edge venv, and proof that `tfxline edge predict` runs there without TensorFlow."""
    source = scratch / "tfxline_source"
    source.mkdir()
    for name in TFXLINE_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    venv = fresh_venv(python, scratch / "edge_venv", ["-r", str(EDGE_REQUIREMENTS)], ["--no-deps", str(source)])
    rows_csv = scratch / "rows.csv"
    with open(rows_csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # Run from the scratch directory with a clean environment: only the venv's own packages import.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    predict = subprocess.run([str(venv / "bin" / "tfxline"), "edge", "predict", str(rows_csv), "--edge-dir",
                              os.path.abspath(edge_dir), "--model-name", model_name],
                             cwd=scratch, env=env, capture_output=True, text=True)
    if predict.returncode != 0:
        raise RuntimeError(f"tfxline edge predict failed in the edge venv:\n{predict.stderr[-3000:]}")
    scores = [json.loads(line) for line in predict.stdout.splitlines()]
    no_tensorflow = subprocess.run([str(venv / "bin" / "python"), "-c", "import tensorflow"], cwd=scratch, env=env,
                                   capture_output=True, text=True)
    return {"bytes": directory_bytes(site_packages(venv)), "packages": installed_packages(venv),
            "scored": len(scores), "first_score": scores[0]["scores"][0],
            "import_tensorflow": no_tensorflow.stderr.strip().splitlines()[-1]}


def tensorflow_install(python: str, scratch: Path) -> dict:
    venv = fresh_venv(python, scratch / "tensorflow_venv", ["-c", str(ROOT / "constraints.txt"), TENSORFLOW])
    return {"bytes": directory_bytes(site_packages(venv)), "packages": installed_packages(venv)}


def fewer_bits(python: str, scratch: Path, saved_model_dir: str, columns: dict, labels, task: str,
               output_key: str) -> list:
    """(weights as, bytes, task metric) of the float model re-quantized by ai-edge-quantizer in a
    scratch venv, tensor names stripped afterwards as in the published files."""
    from components.tflite_export import converter, parity

    named = scratch / "float_with_tensor_names.tflite"
    named.write_bytes(converter.tflite_converter(saved_model_dir).convert())  # the quantizer finds tensors by name
    venv = fresh_venv(python, scratch / "quantizer_venv", [QUANTIZER])
    out = scratch / "fewer_bits"
    out.mkdir()
    subprocess.run([str(venv / "bin" / "python"), str(ROOT / "benchmarks" / "quantize_weights.py"), str(named),
                    str(out), *FEWER_BITS.values()], check=True, cwd=scratch, capture_output=True)
    results = []
    for label, recipe in FEWER_BITS.items():
        model = converter.without_tensor_names((out / f"{recipe}.tflite").read_bytes())
        scores = parity.tflite_scores(model, columns, output_key)
        results.append((label, len(model), parity.task_metric(task, labels, scores)[1]))
    return results


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="the pipeline config whose output to measure")
    parser.add_argument("--python", default=pyenv_python(), help="Python 3.10 for the fresh venvs")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    version = newest_version(config)
    version_dir = os.path.join(config.output.edge, config.name, version)
    saved_model_dir = os.path.join(config.output.serving, config.name, version)
    from serving import layout

    manifest = layout.read_manifest(version_dir)

    from components.tflite_export import parity
    from config import names

    print(f"measuring version {version}: SavedModel and TFLite models ...", flush=True)
    records = eval_records(config, SINGLE_CALLS)
    columns = parity.raw_columns(records, manifest["inputs"])
    timings = measure_models(saved_model_dir, version_dir, columns)
    files = {"SavedModel directory": directory_bytes(saved_model_dir),
             "model.tflite (float)": os.path.getsize(os.path.join(version_dir, layout.FLOAT_MODEL)),
             "model_quant.tflite (quantized)": os.path.getsize(os.path.join(version_dir, layout.QUANTIZED_MODEL))}
    breakdown = {name: tflite_bytes_by_kind(os.path.join(version_dir, name))
                 for name in (layout.FLOAT_MODEL, layout.QUANTIZED_MODEL)}

    import tensorflow as tf

    output_key = names.output_key(config)
    saved_model_scores, labels = parity.saved_model_outputs(tf.saved_model.load(saved_model_dir), records, output_key,
                                                            config.label.name)
    metric_name, saved_model_metric = parity.task_metric(config.task, labels, saved_model_scores)
    published = [(f"`{name}`, TF {tf.__version__} converter", files[label],
                  parity.task_metric(config.task, labels, parity.tflite_scores(
                      Path(version_dir, name).read_bytes(), columns, output_key))[1])
                 for name, label in (("model.tflite", "model.tflite (float)"),
                                     ("model_quant.tflite", "model_quant.tflite (quantized)"))]

    print("installing the edge venv, a TensorFlow venv and an ai-edge-quantizer venv (pip) ...", flush=True)
    sample_rows = as_rows({name: values[:5] for name, values in columns.items()})
    with tempfile.TemporaryDirectory(prefix="tfxline-edge-bench-") as scratch:
        edge = edge_install(args.python, Path(scratch), config.output.edge, config.name, sample_rows)
        tensorflow = tensorflow_install(args.python, Path(scratch))
        requantized = fewer_bits(args.python, Path(scratch), saved_model_dir, columns, labels, config.task,
                                 output_key)

    # timings: the SavedModel first, then per variant SignatureRunner, allocated once, predict().
    saved_model_p50, runner_p50, allocated_p50, runtime_p50 = (timings[i][1] for i in range(4))
    quant_ratio = files["model_quant.tflite (quantized)"] / files["model.tflite (float)"]
    install_ratio = edge["bytes"] / tensorflow["bytes"]
    float_bytes = files["model.tflite (float)"]
    smallest = min(requantized, key=lambda variant: variant[1])
    float_parts = breakdown["model.tflite"]
    not_weights = float_bytes - float_parts["dense weights"] - float_parts["embeddings"]
    lines = [
        f"Machine: {os.cpu_count()} cores (shared), Python {sys.version.split()[0]}; model: `{config.name}` version "
        f"{version}, {len(manifest['inputs'])} raw features in, Transform graph included. Single example: "
        f"{SINGLE_CALLS:,} eval rows, one call each, after {WARMUP_CALLS} warm-up calls; batch: {BATCH} rows per "
        f"call for {BATCH_SECONDS:.0f} s.",
        "",
        "| model, called how | single p50 | single p99 | batch-256 throughput |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {p50:.3f} ms | {p99:.3f} ms | {rate:,.0f} examples/s |" for name, p50, p99, rate in timings],
        "",
        "| file | bytes |",
        "|---|---:|",
        *[f"| {name} | {size:,} |" for name, size in files.items()],
        "",
        "Where the bytes of each .tflite file go (constants by the op that reads them):",
        "",
        "| | " + " | ".join(breakdown) + " |",
        "|---|" + "---:|" * len(breakdown),
        *[f"| {kind} | " + " | ".join(f"{parts[kind]:,}" for parts in breakdown.values()) + " |"
          for kind in next(iter(breakdown.values()))],
        "",
        f"The float model with fewer bits per weight, {metric_name} on the same {len(records):,} eval rows (the "
        f"SavedModel: {saved_model_metric:.4f}):",
        "",
        f"| model | bytes | / float file | {metric_name} |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {size:,} | {size / float_bytes:.2f} | {metric:.4f} |" for name, size, metric in published],
        *[f"| {label} weights (ai-edge-quantizer `{FEWER_BITS[label]}`) | {size:,} | {size / float_bytes:.2f} | "
          f"{metric:.4f} |" for label, size, metric in requantized],
        "",
        "| install (fresh venv, site-packages) | size | packages |",
        "|---|---:|---:|",
        f"| edge: `serving/edge/requirements.txt` + tfxline `--no-deps` | {edge['bytes'] / 2**20:.1f} MiB | "
        f"{edge['packages']} |",
        f"| `{TENSORFLOW}` | {tensorflow['bytes'] / 2**20:.1f} MiB | {tensorflow['packages']} |",
        "",
        f"In the edge venv, `tfxline edge predict rows.csv` scored {edge['scored']} eval rows (first score "
        f"{edge['first_score']:.4f}); `import tensorflow` there: `{edge['import_tensorflow']}`.",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| TFLite float single-example p50 at least {TARGET_SPEEDUP:.0f}x faster than the SavedModel call | "
        f"{saved_model_p50 / runtime_p50:.1f}x through the edge runtime's `predict()` on a row dict "
        f"({runtime_p50:.3f} vs {saved_model_p50:.3f} ms); {saved_model_p50 / allocated_p50:.1f}x for the LiteRT call "
        f"alone ({allocated_p50:.3f} ms); {saved_model_p50 / runner_p50:.1f}x through a SignatureRunner | "
        f"{verdict(saved_model_p50 / runtime_p50 >= TARGET_SPEEDUP)} |",
        f"| quantized file at most 1/4 of the float file | {quant_ratio:.2f} "
        f"({files['model_quant.tflite (quantized)']:,} / {float_bytes:,} B); with {smallest[0]} "
        f"weights still {smallest[1] / float_bytes:.2f}: what is not weights (graph, signature, vocabularies: "
        f"{not_weights:,} B) is {not_weights / float_bytes:.2f} of the float file by itself | "
        f"{verdict(quant_ratio <= TARGET_QUANT_RATIO)} |",
        f"| edge install under 1/10 of the TensorFlow install | {install_ratio:.3f} "
        f"({edge['bytes'] / 2**20:.1f} / {tensorflow['bytes'] / 2**20:.1f} MiB) | "
        f"{verdict(install_ratio < TARGET_INSTALL_RATIO)} |",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(ROOT / "BENCHMARKS.md", "edge", "Edge: TFLite with LiteRT vs the SavedModel with TensorFlow", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

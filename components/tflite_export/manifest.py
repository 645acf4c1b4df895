"""The edge model's manifest and its atomic publication next to the TF Serving push."""
import hashlib
import json
import os
import shutil
from typing import Dict

MANIFEST = "manifest.json"
FLOAT_MODEL = "model.tflite"
QUANTIZED_MODEL = "model_quant.tflite"


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def build_manifest(version: str, model_name: str, raw_inputs: list, output_key: str, files: Dict[str, bytes],
                   metrics: dict) -> dict:
    return {
        "model_name": model_name,
        "version": int(version),
        "signature": "serving_raw",
        "inputs": [{**item, "shape": [-1]} for item in raw_inputs],
        "outputs": [output_key],
        "metrics": metrics,
        "files": {name: {"sha256": sha256(content), "bytes": len(content)} for name, content in files.items()},
    }


def publish(edge_base: str, version: str, files: Dict[str, bytes], manifest: dict) -> str:
    """Writes the files and manifest into a hidden directory and renames it to `<version>`, so a
    watching runtime never sees a partial version. An existing version is left as it is."""
    target = os.path.join(edge_base, str(version))
    if os.path.isdir(target):
        return target
    os.makedirs(edge_base, exist_ok=True)
    staging = os.path.join(edge_base, f".incoming-{version}")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for name, content in files.items():
        with open(os.path.join(staging, name), "wb") as handle:
            handle.write(content)
    with open(os.path.join(staging, MANIFEST), "w") as handle:
        json.dump(manifest, handle, indent=2)
    os.rename(staging, target)
    return target

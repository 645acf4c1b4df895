"""Pusher executor that publishes a blessed model into TF Serving's layout atomically.

TFX's own Pusher copies files straight into `<base>/<version>/` (saved_model.pb last), so a
watching server can see a half-written version. Here the copy goes to a hidden temporary
directory on the same filesystem and is renamed into place; servers ignore names that are
not integers. Versions are Unix seconds, as TFX's, but always above the newest existing one.
Pushing the model that is already the newest version (a re-run that re-blessed a cached
model) publishes nothing new and reports that version. After a push, TF Serving's config files
next to the model directories follow it (serving/model_config.py: the first version is `stable`,
later ones `canary`)."""
import hashlib
import os
import shutil
import time
from typing import Any, Dict, List

from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from serving.model_config import write_serving_configs
from serving.registry import versions_on_disk

NEW_VERSION = "new_version"


def next_version(base_directory: str, now: float) -> int:
    versions = versions_on_disk(base_directory)
    return max(int(now), versions[-1] + 1 if versions else 0)


def fingerprint(model_dir: str) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, model_dir).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def publish(model_dir: str, base_directory: str, now: float) -> str:
    """Copies `model_dir` to `<base_directory>/<version>` in one rename; returns the version."""
    os.makedirs(base_directory, exist_ok=True)
    versions = versions_on_disk(base_directory)
    if versions and fingerprint(os.path.join(base_directory, str(versions[-1]))) == fingerprint(model_dir):
        return str(versions[-1])
    version = next_version(base_directory, now)
    staging = os.path.join(base_directory, f".incoming-{version}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model_dir, staging)
    os.rename(staging, os.path.join(base_directory, str(version)))
    return str(version)


class Executor(tfx_pusher_executor.Executor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        pushed_model = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed_model)
            return
        model_dir = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base_directory = destination.filesystem.base_directory

        before = {str(v) for v in versions_on_disk(base_directory)}
        version = publish(model_dir, base_directory, time.time())
        # Labels and version policy follow the push, so TF Serving polling models.config serves it.
        write_serving_configs(os.path.dirname(base_directory), os.path.basename(base_directory), int(version))
        io_utils.copy_dir(model_dir, pushed_model.uri)
        self._MarkPushed(pushed_model, pushed_destination=os.path.join(base_directory, version),
                         pushed_version=version)
        # 0 when this model already was the newest version (a re-run re-blessed it): later steps that act on
        # a new version only (the drift baseline) are skipped.
        pushed_model.set_int_custom_property(NEW_VERSION, int(version not in before))

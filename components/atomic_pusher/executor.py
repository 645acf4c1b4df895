"""Pusher executor that publishes a blessed model into TF Serving's layout without a watching
server ever loading half a version, on local disk and on object stores (serving/layout.py).

TFX's own Pusher copies files straight into `<base>/<version>/` (saved_model.pb last). Here,
under the serving directory's release lock: the version (Unix seconds, as TFX's, but always above
the newest existing one) is chosen, the model is staged and renamed into place on local disk or
written with saved_model.pb last on an object store, and then TF Serving's config files next to
the model directories name it (serving/release_state.py: the first version is `stable`, later
ones `canary`). Pushing the model that is already the newest version (a re-run that re-blessed a
cached model) publishes nothing new and reports that version."""
import time
from typing import Any, Dict, List

from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from serving import layout, release_state

NEW_VERSION = "new_version"


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
        base_directory = destination.filesystem.base_directory.rstrip("/")

        before = {str(v) for v in layout.versions(base_directory)}
        version = release_state.push(model_dir, base_directory, time.time())
        io_utils.copy_dir(model_dir, pushed_model.uri)
        self._MarkPushed(pushed_model, pushed_destination=layout.join(base_directory, version),
                         pushed_version=version)
        # 0 when this model already was the newest version (a re-run re-blessed it): later steps that act on
        # a new version only (the drift baseline) are skipped.
        pushed_model.set_int_custom_property(NEW_VERSION, int(version not in before))

"""Statistics of every split of an Examples artifact as tfxline profiles (monitoring/statistics.py): TFDV's
fields plus the exact distributions drift tests need, in TFDV's layout (Split-<split>/FeatureStats.pb).
The pipeline's drift gate compares them, and `tfxline monitor` finds a served version's training profile
through ML Metadata (Examples -> DataProfiler -> DataProfile)."""
import json
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from config import MonitoringConfig
from monitoring import examples, statistics

EXAMPLES_KEY = "examples"
PROFILE_KEY = "profile"
FEATURES_KEY = "features"
MONITORING_KEY = "monitoring"
SPAN = "span"


def span_of(artifact: types.Artifact) -> int:
    return artifact.get_int_custom_property(SPAN) if artifact.has_custom_property(SPAN) else 0


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        data = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        profile = artifact_utils.get_single_instance(output_dict[PROFILE_KEY])
        kinds = {f["name"]: f["kind"] for f in json.loads(exec_properties[FEATURES_KEY])}
        options = statistics.Options.of(MonitoringConfig.model_validate_json(exec_properties[MONITORING_KEY]))
        splits = artifact_utils.decode_split_names(data.split_names)
        rows = {}
        for split in splits:
            columns, rows[split] = examples.read_split(data.uri, split, list(kinds))
            statistics.write_profile(profile.uri, split, statistics.profile(columns, kinds, options, split))
        profile.set_string_custom_property("split_names", artifact_utils.encode_split_names(splits))
        profile.set_int_custom_property(SPAN, span_of(data))
        profile.set_string_custom_property("rows", json.dumps(rows))

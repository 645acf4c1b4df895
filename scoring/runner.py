"""The Beam runner a scoring or streaming job runs on, from the config (no Beam import here: the
local speed-ups are installed from these arguments before Beam is imported)."""
from typing import List

from config import PipelineConfig


def beam_args(config: PipelineConfig) -> List[str]:
    """From the config's `beam` section, as the pipeline's runs: the DirectRunner's workers here
    (1 in process, more in processes), any other runner by `beam.extra_args` (e.g.
    --runner=DataflowRunner with its project, region and temp_location)."""
    if config.beam.workers == 1:
        mode = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    else:
        mode = ["--direct_running_mode=multi_processing", f"--direct_num_workers={config.beam.workers}"]
    return mode + ["--pickle_library=cloudpickle"] + list(config.beam.extra_args)

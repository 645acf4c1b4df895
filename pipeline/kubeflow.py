"""Compiling the pipeline for Kubeflow Pipelines with TFX's V2 runner (the V1 runner is
gone in TFX 1.16). Paths come from the config's `kubeflow` section: pods see those, not
this machine's."""
import os

from config import PipelineConfig


def compile_pipeline(config: PipelineConfig, output_file: str) -> str:
    # Not `tfx.v1`: it also imports TFX's Google Cloud extensions, which this compile never uses.
    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import (KubeflowV2DagRunner,
                                                                       KubeflowV2DagRunnerConfig)

    from pipeline.pipeline import create_pipeline

    kubeflow = config.kubeflow
    schema_path = None
    if config.schema_.source == "curated":
        schema_path = kubeflow.schema_path or config.schema_.curated_path
    tfx_pipeline = create_pipeline(
        config,
        pipeline_root=kubeflow.pipeline_root,
        data_path=kubeflow.data_path,
        schema_path=schema_path,
        serving_dir=kubeflow.serving_dir,
        edge_dir=kubeflow.edge_dir,
        beam_pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=0"],
        kubeflow=True)
    output_file = os.path.abspath(output_file)
    runner = KubeflowV2DagRunner(
        config=KubeflowV2DagRunnerConfig(default_image=kubeflow.image),
        output_dir=os.path.dirname(output_file),
        output_filename=os.path.basename(output_file))
    runner.run(tfx_pipeline)
    return output_file

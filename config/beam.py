"""Beam profiles: where the pipeline's Beam work runs, as named, validated settings, and the one
function that turns a profile into Beam's pipeline arguments (`pipeline_args`). The pipeline's
local runs, its Kubeflow pods and any other Beam job of tfxline (batch scoring) take their flags
from here, so a runner is described once.

Runners: DirectRunner (in process, or N processes), PortableRunner (a job server, e.g. Beam's
Python job service, with an SDK worker pool), FlinkRunner and SparkRunner (a running job server,
or the job-server jar that Beam starts), DataflowRunner (workers run the pipeline image)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from config import PipelineConfig

# Beam 2.59's FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS: Beam rejects any other --flink_version.
FLINK_VERSIONS = ("1.15", "1.16", "1.17", "1.18")
# The pipeline's components that run Beam jobs: the keys `beam.component_args` accepts.
BEAM_COMPONENTS = ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator")
# Beam's SDK image for this Beam version, for DOCKER environments when no pipeline image is given.
# DirectRunner never starts an image: naming one only keeps TFX from building an sdist of itself
# for remote workers before every Beam component (~1.4 s).
BEAM_SDK_IMAGE = "apache/beam_python3.10_sdk:2.59.0"
# Beam pickles every DoFn when a pipeline starts and unpickles it to run it (a few thousand times a
# run): cloudpickle took 1.6 s where the default, dill, took 2.7 s. Workers read the choice from the
# pipeline options, so it holds on every runner.
PICKLER_FLAG = "--pickle_library=cloudpickle"
BUILT_IN_PROFILES = {
    "in_process": {"runner": "DirectRunner", "workers": 1},
    "multi_process": {"runner": "DirectRunner", "workers": 0},
}
_ENVIRONMENT_FLAGS = ("environment_type", "environment_config", "sdk_worker_parallelism")
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _host_port(value: Optional[str]) -> Optional[str]:
    if value is not None and not _HOST_PORT.match(value):
        raise ValueError(f"'{value}' is not host:port (e.g. localhost:8099)")
    return value


class _Profile(_Strict):
    # More Beam flags, for what the profile's fields do not cover; the flags the fields set are refused here.
    extra_args: List[str] = Field(default_factory=list)
    OWNED_FLAGS: ClassVar[Tuple[str, ...]] = ("runner",)

    @model_validator(mode="after")
    def _extra_args_do_not_override_fields(self):
        for arg in self.extra_args:
            if not arg.startswith("--"):
                raise ValueError(f"extra_args: '{arg}' is not a --flag")
            flag = arg[2:].split("=", 1)[0]
            if flag in self.OWNED_FLAGS:
                raise ValueError(f"extra_args: --{flag} is set by the profile's own fields; set it there")
        return self


class _PortableEnvironment(_Profile):
    """Where the SDK workers run. EXTERNAL: a worker pool at environment_config (host:port), e.g. a
    sidecar running the pipeline image; LOOPBACK: in the submitting process; DOCKER: the image named
    by environment_config (default: the pipeline image); PROCESS (Java job servers only): the
    command in environment_config's JSON."""
    environment_type: Literal["EXTERNAL", "LOOPBACK", "DOCKER", "PROCESS"] = "EXTERNAL"
    environment_config: Optional[str] = None
    # SDK workers per worker host (0: Beam chooses).
    sdk_worker_parallelism: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _environment_is_complete(self):
        if self.environment_type == "EXTERNAL":
            if not self.environment_config:
                raise ValueError("environment_type EXTERNAL needs environment_config: the worker pool's host:port")
            _host_port(self.environment_config)
        if self.environment_type == "PROCESS" and not self.environment_config:
            raise ValueError("environment_type PROCESS needs environment_config, e.g. "
                             '{"command": "/opt/apache/beam/boot"}')
        if self.environment_type == "LOOPBACK" and self.environment_config:
            raise ValueError("environment_type LOOPBACK takes no environment_config")
        return self

    def _environment_args(self, image: Optional[str]) -> List[str]:
        config = self.environment_config
        if self.environment_type == "DOCKER" and not config:
            config = image or BEAM_SDK_IMAGE
        args = [f"--environment_type={self.environment_type}"]
        if config:
            args.append(f"--environment_config={config}")
        return args + [f"--sdk_worker_parallelism={self.sdk_worker_parallelism}"]


class DirectProfile(_Profile):
    runner: Literal["DirectRunner"]
    # 1: in the submitting process (fastest for small data); N: N worker processes; 0: one per core.
    workers: int = Field(default=1, ge=0)
    OWNED_FLAGS: ClassVar[Tuple[str, ...]] = ("runner", "direct_running_mode", "direct_num_workers")

    def args(self, image: Optional[str]) -> List[str]:
        if self.workers == 1:
            mode = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
        else:
            mode = ["--direct_running_mode=multi_processing", f"--direct_num_workers={self.workers}"]
        return ["--runner=DirectRunner", *mode, f"--sdk_container_image={image or BEAM_SDK_IMAGE}"]


class PortableProfile(_PortableEnvironment):
    runner: Literal["PortableRunner"]
    job_endpoint: str
    OWNED_FLAGS: ClassVar[Tuple[str, ...]] = ("runner", "job_endpoint", *_ENVIRONMENT_FLAGS)

    @field_validator("job_endpoint")
    @classmethod
    def _endpoint(cls, value):
        return _host_port(value)

    def args(self, image: Optional[str]) -> List[str]:
        return ["--runner=PortableRunner", f"--job_endpoint={self.job_endpoint}", *self._environment_args(image)]


class _JavaJobServer(_PortableEnvironment):
    """A Flink or Spark job server: one already running (job_endpoint, the usual set-up on
    Kubernetes), or its jar (job_server_jar, a path or URL), which Beam starts with Java."""
    job_endpoint: Optional[str] = None
    job_server_jar: Optional[str] = None

    @field_validator("job_endpoint")
    @classmethod
    def _endpoint(cls, value):
        return _host_port(value)

    @model_validator(mode="after")
    def _one_job_server(self):
        if (self.job_endpoint is None) == (self.job_server_jar is None):
            raise ValueError("needs exactly one of job_endpoint (a running job server, host:port) or "
                             "job_server_jar (a path or URL; Beam starts it, which needs Java)")
        return self


def _flink_version(value) -> str:
    # YAML reads 1.18 as a number (and 1.10 as 1.1).
    text = str(value)
    if text not in FLINK_VERSIONS:
        raise ValueError(f"'{text}' is not supported: Beam 2.59 runs on Flink {', '.join(FLINK_VERSIONS)} only "
                         f"(write it quoted, e.g. \"1.18\", and run a Flink cluster of one of those versions)")
    return text


class FlinkProfile(_JavaJobServer):
    runner: Literal["FlinkRunner"]
    # The Flink cluster's REST address (host:port), "[local]" for an embedded cluster, "[auto]" to let
    # the job server choose.
    flink_master: str = "[auto]"
    flink_version: str = FLINK_VERSIONS[-1]
    parallelism: Optional[int] = Field(default=None, ge=1)
    OWNED_FLAGS: ClassVar[Tuple[str, ...]] = ("runner", "job_endpoint", *_ENVIRONMENT_FLAGS, "flink_master",
                                              "flink_version", "flink_job_server_jar", "parallelism")

    @field_validator("flink_version", mode="before")
    @classmethod
    def _version(cls, value):
        return _flink_version(value)

    def args(self, image: Optional[str]) -> List[str]:
        if self.job_endpoint:
            args = ["--runner=PortableRunner", f"--job_endpoint={self.job_endpoint}"]
        else:
            args = ["--runner=FlinkRunner", f"--flink_job_server_jar={self.job_server_jar}"]
        args += [f"--flink_master={self.flink_master}", f"--flink_version={self.flink_version}"]
        if self.parallelism:
            args.append(f"--parallelism={self.parallelism}")
        return args + self._environment_args(image)


class SparkProfile(_JavaJobServer):
    runner: Literal["SparkRunner"]
    spark_master_url: str = "local[4]"
    OWNED_FLAGS: ClassVar[Tuple[str, ...]] = ("runner", "job_endpoint", *_ENVIRONMENT_FLAGS, "spark_master_url",
                                              "spark_job_server_jar")

    def args(self, image: Optional[str]) -> List[str]:
        if self.job_endpoint:
            args = ["--runner=PortableRunner", f"--job_endpoint={self.job_endpoint}"]
        else:
            args = ["--runner=SparkRunner", f"--spark_job_server_jar={self.job_server_jar}"]
        return args + [f"--spark_master_url={self.spark_master_url}"] + self._environment_args(image)


class DataflowProfile(_Profile):
    """Dataflow's workers run the pipeline image (`--sdk_container_image`), the one Kubeflow runs:
    tfxline's code is installed there, which Dataflow's own SDK image lacks."""
    runner: Literal["DataflowRunner"]
    project: str
    region: str
    temp_location: str
    staging_location: Optional[str] = None
    service_account_email: Optional[str] = None
    max_num_workers: Optional[int] = Field(default=None, ge=1)
    machine_type: Optional[str] = None
    # Left out: the config's kubeflow.image. Another image is refused: workers without tfxline's
    # code fail on its DoFns (No module named ...).
    sdk_container_image: Optional[str] = None
    OWNED_FLAGS: ClassVar[Tuple[str, ...]] = ("runner", "project", "region", "temp_location", "staging_location",
                                              "service_account_email", "max_num_workers", "machine_type",
                                              "sdk_container_image")

    @field_validator("temp_location", "staging_location")
    @classmethod
    def _on_gcs(cls, value):
        if value is not None and not value.startswith("gs://"):
            raise ValueError(f"'{value}' must be a gs:// location (Dataflow stages files on Cloud Storage)")
        return value

    def args(self, image: Optional[str]) -> List[str]:
        if not image:
            raise ValueError("DataflowRunner needs kubeflow.image, the image its workers run")
        if self.sdk_container_image and self.sdk_container_image != image:
            raise ValueError(f"sdk_container_image '{self.sdk_container_image}' is not the pipeline image "
                             f"'{image}' (kubeflow.image); Dataflow's workers must run the pipeline image")
        args = ["--runner=DataflowRunner", f"--project={self.project}", f"--region={self.region}",
                f"--temp_location={self.temp_location}", f"--sdk_container_image={image}"]
        for flag in ("staging_location", "service_account_email", "max_num_workers", "machine_type"):
            if getattr(self, flag) is not None:
                args.append(f"--{flag}={getattr(self, flag)}")
        return args


Profile = Annotated[Union[DirectProfile, PortableProfile, FlinkProfile, SparkProfile, DataflowProfile],
                    Field(discriminator="runner")]


class BeamConfig(_Strict):
    # The profile `tfxline run` uses (`--beam-profile` picks another); kubeflow.beam_profile is the pods'.
    profile: str = "in_process"
    # Named profiles, added to (or replacing) the built-in in_process and multi_process.
    profiles: Dict[str, Profile] = Field(default_factory=dict, validate_default=True)
    # More flags for one component, after the profile's, e.g. {Evaluator: [--direct_num_workers=2]}.
    component_args: Dict[str, List[str]] = Field(default_factory=dict)

    @field_validator("profiles", mode="before")
    @classmethod
    def _with_built_ins(cls, value):
        return {**BUILT_IN_PROFILES, **(value or {})}

    @field_validator("component_args")
    @classmethod
    def _known_components(cls, value):
        for component, args in value.items():
            if component not in BEAM_COMPONENTS:
                raise ValueError(f"'{component}' is not one of the pipeline's Beam components {list(BEAM_COMPONENTS)}")
            bad = [arg for arg in args if not arg.startswith("--")]
            if bad:
                raise ValueError(f"{component}: '{bad[0]}' is not a --flag")
        return value

    @model_validator(mode="after")
    def _profile_exists(self):
        check_profile(self, self.profile, "beam.profile")
        return self


def check_profile(beam: BeamConfig, name: str, field: str) -> None:
    if name not in beam.profiles:
        raise ValueError(f"{field}: no Beam profile '{name}'; known: {', '.join(sorted(beam.profiles))}")


def pipeline_args(config: "PipelineConfig", profile: Optional[str] = None, component: Optional[str] = None,
                  image: Optional[str] = None) -> List[str]:
    """Beam's pipeline arguments for `profile` (default: the config's `beam.profile`), with
    `component`'s own `beam.component_args` last (Beam takes the last of a repeated flag). `image` is
    the image remote workers run (DataflowRunner needs it, DOCKER environments default to it)."""
    name = profile or config.beam.profile
    check_profile(config.beam, name, "beam profile")
    chosen = config.beam.profiles[name]
    args = chosen.args(image) + [PICKLER_FLAG] + list(chosen.extra_args)
    if component is not None:
        args += config.beam.component_args.get(component, [])
    return args


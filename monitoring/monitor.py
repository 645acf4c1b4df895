"""`tfxline monitor`: skew and drift of served requests, per model version.

For each version in the requests: skew (all its requests against the statistics of the data it was
trained on, found through ML Metadata), drift against the previous window (its newest window against the
window before) and drift against training (its newest window against the training data): covariate drift,
the inputs moved. Where labels arrived (`tfxline feedback ingest`), also the version's live quality and
concept drift (monitoring/quality.py): the relation of inputs and label moved."""
import dataclasses
import glob
import os
import time
from typing import Dict, List, Optional

import numpy as np

from config import PipelineConfig
from monitoring import compare, feedback, requests as request_log, statistics, windows
from monitoring.quality import VersionQuality, version_quality

SKEW, DRIFT_PREVIOUS, DRIFT_TRAINING = "skew", "drift vs previous window", "drift vs training"
# The comparisons' names as Prometheus label values.
LABELS = {SKEW: "skew", DRIFT_PREVIOUS: "drift_previous", DRIFT_TRAINING: "drift_training"}
TRAIN_SPLIT = "train"


class MonitorError(ValueError):
    """Monitoring cannot be done as asked; the message names the problem and what to do."""


@dataclasses.dataclass
class VersionReport:
    version: int
    rows: int
    training: str                       # where the training statistics came from
    comparisons: List[compare.Comparison]
    notes: List[str]
    profiles: Dict[str, statistics.Profile]  # training, all, newest, previous

    @property
    def drifted(self) -> bool:
        return any(c.drifted for c in self.comparisons)


@dataclasses.dataclass
class Report:
    model: str
    source: str
    rows: int
    window: str
    alpha: float
    versions: List[VersionReport]
    created: float = dataclasses.field(default_factory=time.time)
    quality: List[VersionQuality] = dataclasses.field(default_factory=list)

    @property
    def drifted(self) -> bool:
        """Covariate drift: the inputs moved."""
        return any(v.drifted for v in self.versions)

    @property
    def concept_drifted(self) -> bool:
        return any(q.concept_drift for q in self.quality)


def request_log_dir(config: PipelineConfig) -> str:
    return config.monitoring.request_log_dir or os.path.join(config.output.root, "request_log")


def monitored_features(config: PipelineConfig) -> Dict[str, str]:
    """Feature name -> kind, for the features whose drift action is not `off`."""
    return {f.name: f.kind for f in config.features if config.monitoring.action(f) != "off"}


def _examples_profile(uri: str, kinds: Dict[str, str], options: statistics.Options) -> statistics.Profile:
    from monitoring import examples

    columns, _ = examples.read_split(uri, TRAIN_SPLIT, list(kinds))
    return statistics.profile(columns, kinds, options, "training")


def training_profile(config: PipelineConfig, version: int, kinds: Dict[str, str],
                     options: statistics.Options):
    """(profile, description) of the data the version was trained on, through ML Metadata."""
    from metadata import lineage, store

    if config.metadata.kind == "sqlite" and not os.path.exists(store.sqlite_path(config)):
        raise MonitorError(f"model version {version}: no ML Metadata at {store.sqlite_path(config)} to find its "
                           f"training statistics; run the pipeline there, or pass --training-stats FILE")
    mlmd = store.open_store(config)
    examples = lineage.training_examples(mlmd, config.name, str(version))
    if examples is None:
        raise MonitorError(f"model version {version}: its training statistics cannot be found (ML Metadata has no "
                           f"push of version {version} by pipeline '{config.name}'); pass --training-stats FILE, "
                           f"or --version to monitor other versions only")
    span = examples.custom_properties["span"].int_value if "span" in examples.custom_properties else None
    where = f"span {span}, " if span is not None else ""
    profiles = lineage.downstream(mlmd, examples.id, statistics.PROFILE_ARTIFACT_TYPE)
    path = os.path.join(profiles[-1].uri, f"Split-{TRAIN_SPLIT}", statistics.PROFILE_FILE) if profiles else None
    if path and os.path.exists(path):
        profile = statistics.read_profile(path)
        return profile, f"{where}{profile.num_rows:,} training rows ({path})"
    profile = _examples_profile(examples.uri, kinds, options)
    return profile, f"{where}{profile.num_rows:,} training rows (computed from {examples.uri})"


def _file_profile(path: str) -> statistics.Profile:
    try:
        profile = statistics.read_profile(path)
    except (OSError, ValueError) as error:
        raise MonitorError(f"--training-stats {path}: cannot be read ({error}); give a FeatureStats.pb written by "
                           f"the pipeline's DriftGate or by `tfxline monitor --stats-dir`") from None
    if not profile.features:
        raise MonitorError(f"--training-stats {path}: plain TFDV statistics without tfxline's distributions; give "
                           f"a FeatureStats.pb written by the pipeline's DriftGate or by `tfxline monitor --stats-dir`")
    return profile


def _comparison(name, reference, window, kinds, monitoring, notes, reference_name, window_name):
    small = min(reference.num_rows, window.num_rows)
    if small < monitoring.min_rows:
        notes.append(f"{name}: not compared, {reference_name} has {reference.num_rows:,} rows and {window_name} "
                     f"{window.num_rows:,} (monitoring.min_rows is {monitoring.min_rows})")
        return None
    return compare.compare(name, reference, window, list(kinds), monitoring.alpha, monitoring.max_feature_alpha)


@dataclasses.dataclass
class _Windows:
    """One version's statistics: all its requests, and its newest and previous windows (each newest profile
    aligned to what it is compared with)."""
    rows: int
    all: statistics.Profile
    newest_name: str
    previous_name: str
    newest: Optional[statistics.Profile] = None            # aligned to training
    previous: Optional[statistics.Profile] = None
    newest_vs_previous: Optional[statistics.Profile] = None  # aligned to the previous window


def _numpy_windows(requests, version, training, kinds, options, window_rows, window_seconds, now_ms) -> _Windows:
    rows = np.flatnonzero(requests.versions == version)
    if window_seconds is not None:
        newest, previous = windows.by_time(rows, requests.times_ms, window_seconds, now_ms)
    else:
        newest, previous = windows.by_count(rows, window_rows)
    result = _Windows(len(rows), statistics.profile(requests.take(rows), kinds, options, f"v{version} all requests",
                                                    align=training), newest.name, previous.name)
    if len(newest):
        columns = requests.take(newest.rows)
        result.newest = statistics.profile(columns, kinds, options, f"v{version} {newest.name}", align=training)
        if len(previous):
            result.previous = statistics.profile(requests.take(previous.rows), kinds, options,
                                                 f"v{version} {previous.name}")
            result.newest_vs_previous = statistics.profile(columns, kinds, options, f"v{version} {newest.name}",
                                                           align=result.previous)
    return result


def _version_report(version, windows_: _Windows, training, where, kinds, monitoring) -> VersionReport:
    notes = []
    profiles = {"training": training, "all": windows_.all}
    comparisons = [_comparison(SKEW, training, windows_.all, kinds, monitoring, notes, "training", "the requests")]
    if windows_.newest is None:
        notes.append(f"drift: no requests of version {version} in the {windows_.newest_name}")
    else:
        profiles["newest"] = windows_.newest
        if windows_.previous is not None:
            profiles["previous"] = windows_.previous
            comparisons.append(_comparison(DRIFT_PREVIOUS, windows_.previous, windows_.newest_vs_previous, kinds,
                                           monitoring, notes, f"the {windows_.previous_name}",
                                           f"the {windows_.newest_name}"))
        else:
            notes.append(f"{DRIFT_PREVIOUS}: no requests in the {windows_.previous_name}")
        comparisons.append(_comparison(DRIFT_TRAINING, training, windows_.newest, kinds, monitoring, notes,
                                       "training", f"the {windows_.newest_name}"))
    return VersionReport(version, windows_.rows, where, [c for c in comparisons if c], notes, profiles)


def _beam_windows(source, config, kinds, options, window_seconds, now_ms, beam_args) -> Dict[int, _Windows]:
    from monitoring import beam

    if window_seconds is None:
        raise MonitorError("--beam cuts windows by time (rows cannot be counted from the end across workers): "
                           "give --window-seconds or monitoring.window_seconds")
    if os.path.isdir(source):
        if not request_log.log_files(source, config.name):
            raise MonitorError(f"no request log of model '{config.name}' in {source}")
        pattern = os.path.join(glob.escape(source), glob.escape(config.name) + request_log.FILE_SUFFIX + "*")
    elif os.path.isfile(source):
        pattern = glob.escape(source)
    else:
        raise MonitorError(f"{source}: no such request log directory or file")
    found = beam.profiles(pattern, kinds, options, window_seconds, now_ms, beam_args)
    result = {}
    for key in sorted(found):
        version, part = key.split("/")
        if part != beam.ALL:
            continue
        newest, previous = found.get(f"{version}/{beam.NEWEST}"), found.get(f"{version}/{beam.PREVIOUS}")
        result[int(version)] = _Windows(found[key].num_rows, found[key], f"last {window_seconds:g} s",
                                        f"the {window_seconds:g} s before", newest, previous, newest)
    return result


def run(config: PipelineConfig, source: Optional[str] = None, versions: Optional[List[int]] = None,
        training_stats: Optional[str] = None, model_version: Optional[int] = None,
        window_rows: Optional[int] = None, window_seconds: Optional[float] = None,
        now_ms: Optional[float] = None, beam_args: Optional[List[str]] = None) -> Report:
    """Windows by time end now (`now_ms`, by default the clock); by count, at each version's newest request.
    With `beam_args` (a list, possibly empty), the statistics are computed by TFDV on Beam."""
    monitoring = config.monitoring
    kinds = monitored_features(config)
    if not kinds:
        raise MonitorError("every feature has drift action 'off' (monitoring.drift); nothing to monitor")
    options = statistics.Options.of(monitoring)
    source = source or request_log_dir(config)
    window_rows = window_rows or monitoring.window_rows
    window_seconds = window_seconds if window_seconds is not None else monitoring.window_seconds
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    window = f"the last {window_seconds:g} s" if window_seconds is not None else f"the last {window_rows:,} requests"

    def training_of(version):
        if training_stats:
            return _file_profile(training_stats), training_stats
        return training_profile(config, version, kinds, options)

    reports = []
    if beam_args is not None:
        found = _beam_windows(source, config, kinds, options, window_seconds, now_ms, beam_args)
        chosen = [v for v in found if not versions or v in versions]
        for version in chosen:
            training, where = training_of(version)
            reports.append(_version_report(version, found[version], training, where, kinds, monitoring))
        total = sum(w.rows for w in found.values())
    else:
        try:
            requests = request_log.assign_version(request_log.read(source, config.name, kinds), model_version)
        except request_log.RequestLogError as error:
            raise MonitorError(str(error)) from None
        if window_seconds is not None and np.isnan(requests.times_ms).all():
            raise MonitorError(f"{source}: the requests have no request_time_ms, so windows by time cannot be cut; "
                               f"use windows by count (--window-rows) or log the time")
        present = sorted(set(requests.versions.tolist()))
        chosen = present if not versions else [v for v in present if v in versions]
        if not chosen:
            raise MonitorError(f"{source}: no requests of version(s) {versions}; the log has {present}")
        for version in chosen:
            training, where = training_of(version)
            found = _numpy_windows(requests, version, training, kinds, options, window_rows, window_seconds, now_ms)
            reports.append(_version_report(version, found, training, where, kinds, monitoring))
        total = requests.num_rows
        if window_seconds is not None and "newest" not in {name for r in reports for name in r.profiles}:
            newest_ms = np.nanmax(requests.times_ms)
            raise MonitorError(f"{source}: no requests in {window} (the newest was logged at "
                               f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(newest_ms / 1000))} UTC); "
                               f"the server logged nothing since: check it serves and logs, or widen "
                               f"--window-seconds")
    if not reports:
        raise MonitorError(f"{source}: no requests of version(s) {versions}")
    if not any(r.comparisons for r in reports):
        raise MonitorError(f"{source}: nothing could be compared: " + "; ".join(n for r in reports for n in r.notes))
    return Report(config.name, source, total, window, monitoring.alpha, reports,
                  quality=live_quality(config, {r.version: r.rows for r in reports}, window_rows, window_seconds,
                                       now_ms))


def live_quality(config: PipelineConfig, versions: Dict[int, int], window_rows: int,
                 window_seconds: Optional[float], now_ms: float) -> List[VersionQuality]:
    """The live quality of the monitored versions (version -> logged requests) that have joined labels."""
    joined: Dict[int, List[dict]] = {}
    for record in feedback.read_joined(config):
        if record["model_version"] in versions:
            joined.setdefault(record["model_version"], []).append(record)
    return [version_quality(config, version, joined[version], versions[version], window_rows, window_seconds,
                            now_ms) for version in sorted(joined)]

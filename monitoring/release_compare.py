"""`tfxline release compare`: should the canary replace stable? On the requests whose labels arrived
(`tfxline feedback ingest`) since the canary was set: first the sample-ratio-mismatch check of the traffic
split (a broken split makes any comparison meaningless), then the difference of the chosen metric with its
95% interval, and a decision from the mixture SPRT (monitoring/sequential.py), valid however often the
command is run: canary better, worse, or not yet known with the labelled requests still needed. `--apply`
promotes (blue-green) or drops the canary through serving/release.py, recording the numbers in the history.

The `release` command is serving/release.py's; this module adds `compare`, which reads monitoring's data."""
import argparse
import calendar
import dataclasses
import time
from typing import List, Optional

import numpy as np

from config import DEFAULT_CONFIG, PipelineConfig, load_config
from serving import release, release_state
from serving.release import ReleaseError
from serving.release_state import CANARY, STABLE

# Per-example metrics (a mean over requests), so that the test's observations are the requests themselves.
METRICS = {
    "binary": ["binary_accuracy", "log_loss"],
    "multiclass": ["sparse_categorical_accuracy", "log_loss"],
    "regression": ["mean_squared_error", "mean_absolute_error"],
}


def outcomes(config: PipelineConfig, metric: str, records: List[dict]) -> np.ndarray:
    """Each labelled request's contribution to the metric."""
    from monitoring import quality

    labels = np.array([r["label"] for r in records], np.float64)
    first = np.array([r["scores"][0] for r in records], np.float64)
    if config.task == "regression":
        errors = first - labels
        return errors ** 2 if metric == "mean_squared_error" else np.abs(errors)
    if config.task == "binary":
        p = np.clip(first, quality.EPSILON, 1 - quality.EPSILON)
        if metric == "binary_accuracy":
            return ((p >= config.evaluation.fairness.decision_threshold) == (labels == 1)).astype(np.float64)
        return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    width = max(len(r["scores"]) for r in records)
    p = np.array([r["scores"] + [0.0] * (width - len(r["scores"])) for r in records], np.float64)
    y = labels.astype(np.int64)
    if metric == "sparse_categorical_accuracy":
        return (p.argmax(axis=1) == y).astype(np.float64)
    return -np.log(np.clip(p[np.arange(len(y)), np.minimum(y, width - 1)], quality.EPSILON, 1))


@dataclasses.dataclass
class Comparison:
    stable: int
    canary: int
    since: str
    metric: str
    traffic: "sequential.SampleRatio"  # noqa: F821 - monitoring/sequential.py, imported when comparing
    labelled: tuple
    means: tuple
    difference: "sequential.Difference"  # noqa: F821
    p_value: float
    alpha: float
    decision: str                   # "better", "worse", "not yet known"
    needed: Optional[int]           # labelled requests in all, when not yet known

    def numbers(self) -> dict:
        return {"metric": self.metric, "stable": self.stable, "canary": self.canary, "since": self.since,
                "traffic": list(self.traffic.counts), "srm_p": self.traffic.p_value,
                "labelled": list(self.labelled), "stable_mean": self.means[0], "canary_mean": self.means[1],
                "difference": self.difference.estimate, "ci": [self.difference.low, self.difference.high],
                "always_valid_p": self.p_value, "alpha": self.alpha, "decision": self.decision}


def _since(events: List[dict], canary: int) -> str:
    """When the canary label was last set to this version."""
    times = [e["time"] for e in events if e["labels"].get(CANARY) == canary and e["action"] in ("push", "canary")]
    return times[-1] if times else "1970-01-01T00:00:00Z"


def compare(config: PipelineConfig, serving_dir: str, model_name: str, metric: Optional[str], canary_share: float,
            alpha: float, min_samples: int, source: Optional[str]) -> Comparison:
    from monitoring import feedback, quality, requests as request_log, sequential
    from monitoring.monitor import request_log_dir

    state = release_state.read_release(serving_dir, model_name)
    if CANARY not in state.labels:
        raise ReleaseError(f"there is no canary of {model_name} to compare",
                           "set one with `tfxline release canary VERSION`")
    if STABLE not in state.labels:
        raise ReleaseError(f"{model_name} has no stable version to compare the canary with", "push a model first")
    stable, canary = state.labels[STABLE], state.labels[CANARY]
    metric = metric or METRICS[config.task][0]
    if metric not in METRICS[config.task]:
        raise ReleaseError(f"--metric {metric} is not a per-request metric of task {config.task}",
                           f"use one of {', '.join(METRICS[config.task])}")
    since = _since(state.events, canary)
    since_ms = calendar.timegm(time.strptime(since, "%Y-%m-%dT%H:%M:%SZ")) * 1000
    source = source or request_log_dir(config)
    try:
        logged = request_log.read(source, model_name, {})
    except request_log.RequestLogError as error:
        raise ReleaseError(str(error), "compare once both versions have served logged requests") from None
    recent = logged.times_ms >= since_ms
    traffic = sequential.sample_ratio(int(((logged.versions == stable) & recent).sum()),
                                      int(((logged.versions == canary) & recent).sum()), canary_share)
    records = [r for r in feedback.read_joined(config)
               if r["model_version"] in (stable, canary) and r["request_time_ms"] >= since_ms]
    arms = {version: [r for r in records if r["model_version"] == version] for version in (stable, canary)}
    counts = (len(arms[stable]), len(arms[canary]))
    if min(counts) < min_samples:
        raise ReleaseError(f"too few labelled requests since the canary was set ({since}): stable {stable} has "
                           f"{counts[0]:,}, canary {canary} {counts[1]:,}",
                           f"need {min_samples:,} of each (--min-samples); ingest more feedback "
                           f"(`tfxline feedback ingest`) and compare again; nothing was changed")
    stable_values, canary_values = outcomes(config, metric, arms[stable]), outcomes(config, metric, arms[canary])
    order = sorted(records, key=lambda r: r["request_time_ms"])
    stable_first = np.array([r["model_version"] == stable for r in order])
    pooled = np.concatenate([stable_values, canary_values]).var(ddof=1)
    tau2 = sequential.MIXTURE_SD ** 2 * pooled
    p_value = sequential.always_valid_p(stable_values, canary_values, stable_first, tau2, min_each=min_samples)
    difference = sequential.difference(stable_values, canary_values)
    lower_is_better = metric in quality.LOWER_IS_BETTER
    needed = None
    if p_value < alpha:
        decision = "better" if (difference.estimate < 0) == lower_is_better else "worse"
    else:
        decision = "not yet known"
        needed = sequential.samples_needed(difference.estimate, stable_values.std(ddof=1), canary_values.std(ddof=1),
                                           canary_share, tau2, alpha, sum(counts))
    return Comparison(stable, canary, since, metric, traffic, counts,
                      (float(stable_values.mean()), float(canary_values.mean())), difference, p_value, alpha,
                      decision, needed)


def format_text(result: Comparison, canary_share: float) -> str:
    traffic = result.traffic
    split = "MISMATCH" if traffic.mismatch else "as expected"
    d = result.difference
    lines = [f"tfxline release compare: stable {result.stable} vs canary {result.canary}, requests since "
             f"{result.since}",
             f"  traffic     stable {traffic.counts[0]:,}  canary {traffic.counts[1]:,}  (expected canary share "
             f"{canary_share:g}): chi-square {traffic.statistic:.2f}, p {traffic.p_value:.3g}: split {split}",
             f"  labelled    stable {result.labelled[0]:,}  canary {result.labelled[1]:,}",
             f"  {result.metric}  stable {result.means[0]:.4f}  canary {result.means[1]:.4f}  difference "
             f"{d.estimate:+.4f} [95% CI {d.low:+.4f}, {d.high:+.4f}] (fixed horizon)",
             f"  sequential  always-valid p {result.p_value:.3g} (mSPRT, alpha {result.alpha:g}; valid however often "
             f"it is checked)"]
    if result.decision == "not yet known":
        more = (f"about {max(result.needed - sum(result.labelled), 0):,} more labelled requests at the observed "
                f"difference" if result.needed else "no difference seen so far")
        lines.append(f"decision: not yet known ({more})")
    else:
        lines.append(f"decision: canary {result.decision}")
    return "\n".join(lines)


def _handler(args) -> int:
    config = load_config(args.config or DEFAULT_CONFIG, resolve_inputs=False)
    result = compare(config, args.serving_dir, args.model_name, args.metric, args.canary_share, args.alpha,
                     args.min_samples, args.requests)
    print(format_text(result, args.canary_share))
    if result.traffic.mismatch:
        raise ReleaseError(f"sample ratio mismatch: stable {result.traffic.counts[0]:,} and canary "
                           f"{result.traffic.counts[1]:,} requests, p {result.traffic.p_value:.2g} at the expected "
                           f"canary share {args.canary_share:g}",
                           "fix the traffic split (or give the real one with --canary-share) before trusting a "
                           "comparison; nothing was changed")
    if not args.apply:
        return 0
    if result.decision == "not yet known":
        print("tfxline release: --apply: no decision yet; nothing was changed")
        return 0
    after = release.apply_decision(args.serving_dir, args.model_name, result.decision == "better", result.canary,
                                   result.numbers())
    print(f"tfxline release: {after.events[-1]['action']} {result.canary} (canary {result.decision}): stable "
          f"{after.labels.get(STABLE, '-')}, canary {after.labels.get(CANARY, '-')}; decision recorded in the history")
    return 0


def _positive_share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _add_compare(commands, common) -> None:
    parser = commands.add_parser(
        "compare", parents=[common], help="A/B decision between stable and canary from the labelled requests",
        description="Compare the canary with stable on the requests labelled since the canary was set "
                    "(`tfxline feedback ingest`): the traffic split's sample-ratio-mismatch check, the metric's "
                    "difference with its 95% interval, and a sequential decision (mSPRT, valid however often it "
                    "is run): canary better, worse, or not yet known. --apply promotes or drops the canary.")
    parser.add_argument("--metric", help="per-request metric (default: binary_accuracy, sparse_categorical_accuracy "
                                         "or mean_squared_error by task; also log_loss, mean_absolute_error)")
    parser.add_argument("--canary-share", "--canary_share", dest="canary_share", type=_positive_share, default=0.5,
                        help="the share of traffic routed to the canary (default 0.5)")
    parser.add_argument("--alpha", type=float, default=0.05, help="false decisions allowed (default 0.05)")
    parser.add_argument("--min-samples", "--min_samples", dest="min_samples", type=int, default=100,
                        help="labelled requests of each version before anything is decided (default 100)")
    parser.add_argument("--requests", help="request log directory (default: the config's)")
    parser.add_argument("--apply", action="store_true",
                        help="promote a better canary (blue-green), drop a worse one; record the decision")
    parser.set_defaults(handler=_handler)


def build_parser() -> argparse.ArgumentParser:
    return release.build_parser(_add_compare)


def main(argv: Optional[List[str]] = None) -> int:
    return release.main(argv, build_parser())

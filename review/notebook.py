"""What the review notebooks call: the same report as `tfxline review` (review/report.py), shown
section by section as plain HTML outputs (no widgets), so they render in JupyterLab, Notebook 7,
VS Code and `nbconvert --to html` alike.

The config comes from $TFXLINE_CONFIG (default: the shipped taxi config) and the run from
$TFXLINE_RUN (default: the latest), so a notebook runs top to bottom without edits after
`tfxline run`. A relative output root is where `tfxline run` put it: under $TFXLINE_RUN_DIR, else
the kernel's directory or its parent (Jupyter starts a kernel in the notebook's own directory,
notebooks/, and `make run` runs at the repository's root). When there is nothing to review, `load`
says so in one sentence and every `show` is empty."""
import os
from typing import Optional

from config import DEFAULT_CONFIG, ConfigError, load_config
from metadata import store
from review import facts, html, model_card, report as review_report

CONFIG_ENV = "TFXLINE_CONFIG"
RUN_ENV = "TFXLINE_RUN"
RUN_DIR_ENV = "TFXLINE_RUN_DIR"


class _Html:
    def __init__(self, markup: str, names):
        self.markup, self.names = markup, names

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return f"<the review's {', '.join(self.names)} (HTML)>"


class Review:
    def __init__(self, report: Optional[dict] = None, problem: Optional[str] = None, config=None):
        self.report, self.problem, self.config = report, problem, config

    def show(self, *names: str) -> Optional[_Html]:
        """The named sections (summary, slices, plots, fairness, data, lineage, model_card) or parts of
        the data section (statistics, schema, anomalies); None when there is nothing to review."""
        if self.report is None:
            return None
        return _Html(html.fragment(self.report, list(names)), names)

    def write(self) -> Optional[str]:
        """Writes the same files as `tfxline review`; returns the HTML's path."""
        if self.report is None:
            return None
        return review_report.write(self.config, self.report)["html"]


def _rooted(config):
    """The config with its output root where the run put it."""
    if os.path.isabs(config.output.root):
        return config
    places = [os.environ[RUN_DIR_ENV]] if os.environ.get(RUN_DIR_ENV) else [os.getcwd(), os.path.dirname(os.getcwd())]
    for place in places:
        rooted = config.model_copy(update={"output": config.output.model_copy(
            update={"root": os.path.join(place, config.output.root)})})
        if store.has_store(rooted):
            return rooted
    return config


def load(config_path: Optional[str] = None, run_id: Optional[str] = None) -> Review:
    path = config_path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    try:
        config = _rooted(load_config(path))
        built = review_report.build(config, run_id or os.environ.get(RUN_ENV) or None, path)
    except (ConfigError, facts.ReviewProblem, model_card.CardError) as problem:
        print(f"Nothing to review: {problem}")
        return Review(problem=str(problem))
    print(f"Run {built['run_id']} of pipeline '{built['pipeline']}' ({path}).")
    for note in built["notes"] + [built["model_card"]["note"]] * bool(built["model_card"]["note"]):
        print(note)
    return Review(built, config=config)

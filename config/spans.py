"""The data's spans (`data.span_pattern`, e.g. "span-{SPAN}/*.csv"): which files belong to which span, and
the files a run reads (the configured span, else the newest), as TFX's ExampleGen driver resolves them."""
import glob
import os
import re
from typing import Dict, List

from config import PipelineConfig


def span_regex(span_pattern: str) -> "re.Pattern":
    """'span-{SPAN}/*.csv' -> a regex over relative paths whose group 1 is the span number."""
    parts = []
    for piece in re.split(r"(\{SPAN\}|\*|\?)", span_pattern):
        parts.append({"{SPAN}": r"(\d+)", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece)))
    return re.compile("^" + "".join(parts) + "$")


def spans(config: PipelineConfig) -> Dict[int, List[str]]:
    """Span number -> its CSV files, for a config with a span pattern."""
    pattern = config.data.span_pattern
    files = sorted(glob.glob(os.path.join(config.data.path, pattern.replace("{SPAN}", "*"))))
    regex = span_regex(pattern)
    result: Dict[int, List[str]] = {}
    for path in files:
        match = regex.match(os.path.relpath(path, config.data.path))
        if match:
            result.setdefault(int(match.group(1)), []).append(path)
    return result


def input_files(config: PipelineConfig) -> List[str]:
    """The CSV files CsvExampleGen will read: all of them, or the configured span's, or the newest span's."""
    if not config.data.span_pattern:
        return sorted(glob.glob(os.path.join(config.data.path, "*.csv")))
    found = spans(config)
    if config.data.span is not None:
        return found.get(config.data.span, [])
    return found[max(found)] if found else []


def span_path(config: PipelineConfig, span: int) -> str:
    """Where a new span's CSV file goes: the pattern with the span number and `data` for a wildcard."""
    pattern = config.data.span_pattern
    if re.search(r"[?\[\]]", pattern):
        raise ValueError(f"data.span_pattern '{pattern}' has wildcards other than '*'; give the output file")
    return os.path.join(config.data.path, pattern.replace("{SPAN}", str(span)).replace("*", "data"))

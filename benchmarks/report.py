"""Writes one benchmark's section of BENCHMARKS.md, keeping the other sections."""
import datetime
from pathlib import Path

HEADER = ("# tfxline benchmarks\n\n"
          "Each section is written by its script in `benchmarks/`; re-run the script to refresh it.\n")


def write_section(path: Path, key: str, title: str, body: str) -> None:
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    text = path.read_text() if path.exists() else HEADER
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"{begin}\n## {title}\n\nMeasured {stamp} by `benchmarks/{key}_benchmark.py`.\n\n{body}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)

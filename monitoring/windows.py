"""The newest window of a model version's requests and the one before it, by count or by time."""
import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass
class Window:
    name: str
    rows: np.ndarray  # row indices into the requests, in log order

    def __len__(self) -> int:
        return len(self.rows)


def by_count(version_rows: np.ndarray, size: int):
    """The last `size` rows and the `size` before them."""
    newest = version_rows[-size:]
    previous = version_rows[max(0, len(version_rows) - 2 * size):max(0, len(version_rows) - size)]
    return Window(f"newest {size:,} requests", newest), Window(f"previous {size:,} requests", previous)


def by_time(version_rows: np.ndarray, times_ms: np.ndarray, seconds: float, end_ms: Optional[float] = None):
    """The rows of the last `seconds` (up to `end_ms`, by default the newest request of the log) and of the
    `seconds` before."""
    end = np.nanmax(times_ms) if end_ms is None else end_ms
    span = seconds * 1000
    times = times_ms[version_rows]
    newest = version_rows[(times > end - span) & (times <= end)]
    previous = version_rows[(times > end - 2 * span) & (times <= end - span)]
    return Window(f"last {seconds:g} s", newest), Window(f"the {seconds:g} s before", previous)

"""Follow-up check-in windows: which one a slip is in now, and when the next opens.

Day N after the booth visit is the 24 hours from ``visit_at + N days``, so a window of
days 11-17 is open from visit + 11 d up to (not including) visit + 18 d.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Window:
    name: str
    first_day: int
    last_day: int

    def opens(self, visit_at: datetime) -> datetime:
        return visit_at + timedelta(days=self.first_day)

    def closes(self, visit_at: datetime) -> datetime:
        """The first moment after the window (exclusive end)."""
        return visit_at + timedelta(days=self.last_day + 1)

    def is_open(self, visit_at: datetime, now: datetime) -> bool:
        return self.opens(visit_at) <= now < self.closes(visit_at)


def windows(config: Mapping[str, tuple[int, int]]) -> tuple[Window, ...]:
    """The configured windows in time order."""
    return tuple(
        sorted(
            (Window(name, first, last) for name, (first, last) in config.items()),
            key=lambda w: w.first_day,
        )
    )


def current(all_windows: tuple[Window, ...], visit_at: datetime, now: datetime) -> Window | None:
    """The window open at ``now``, if any."""
    return next((w for w in all_windows if w.is_open(visit_at, now)), None)


def next_window(
    all_windows: tuple[Window, ...], visit_at: datetime, now: datetime
) -> Window | None:
    """The first window that has not opened yet at ``now`` (None after the last)."""
    return next((w for w in all_windows if now < w.opens(visit_at)), None)

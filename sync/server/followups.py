"""Follow-up check-in windows: which one a slip is in now, and when the next opens.

Day N after the booth visit is the 24 hours from ``visit_at + N days``, so a window of
days 11-17 is open from visit + 11 d up to (not including) visit + 18 d.

A response's ``answers`` (table ``followup_response``) use the screening reference's field
names: ``pain_nrs`` (back, 0-10), ``leg_pain_nrs`` (0-10, or null when there was no leg pain
at intake), ``sbi`` (``{sbi_leg_pain, sbi_numbness, sbi_weakness, sbi_sitting}`` 0-6, or
null when not asked at intake), ``global_change`` (one of ``GLOBAL_CHANGE``) and the four
``ces_*`` warning signs, each ``no`` or ``new_or_worsening``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

GLOBAL_CHANGE = (
    "completely_recovered",
    "much_better",
    "slightly_better",
    "no_change",
    "slightly_worse",
    "much_worse",
    "worse_than_ever",
)
CES_FIELDS = (
    "ces_saddle_numbness",
    "ces_bladder_change",
    "ces_bowel_change",
    "ces_sexual_dysfunction",
)


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

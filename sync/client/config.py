"""How hard and how long one sync run tries, and the clock it reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sync import protocol as p

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SyncConfig:
    """How hard and how long one sync run tries. Tests shorten the waits here."""

    batch_size: int = 200
    max_batch_bytes: int = 2_000_000
    """A batch closes at this many bytes of records (a single larger record goes alone)."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    attempts: int = 6
    """Tries per request (first try included) before the run gives up for now."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    total_time: float = 300.0
    """The whole run, waits included, ends within this many seconds."""
    retry_interval: float = 60.0
    """After a failed run, the next try is due this long after it (or after Retry-After)."""
    lock_wait: float = 0.0
    """How long to wait for another relay of the same outbox to finish."""
    verify_tls: bool | str = True
    """``True``, ``False`` or the path of a CA bundle for the server's certificate."""
    compress: bool = True
    """Send bodies gzip-compressed and accept compressed answers (a kit on a slow link
    gains most); a server that refuses gzip gets plain bodies from then on."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= p.MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {p.MAX_BATCH}")
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

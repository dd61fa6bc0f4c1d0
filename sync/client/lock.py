"""The relay lock: one relay of an outbox at a time, through an exclusive ``flock`` on a
file next to the kit's database, which the kernel releases when the process dies, however
it dies."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine

LOCK_SUFFIX = ".sync-lock"


def lock_path(engine: Engine) -> Path:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        raise ValueError("sync needs the kit's SQLite database file")
    path = Path(database)
    return path.with_name(path.name + LOCK_SUFFIX)


@contextmanager
def relay_lock(
    path: Path, *, wait: float = 0.0, stop: threading.Event | None = None
) -> Iterator[bool]:
    """Hold the outbox's relay lock; yields False when another relay holds it."""
    import fcntl

    pause = stop or threading.Event()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        acquired = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left > 0 and not pause.is_set():
                    # flock has no timed wait: look again shortly.
                    pause.wait(min(0.05, left))
                    continue
            break
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

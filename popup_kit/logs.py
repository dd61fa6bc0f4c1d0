"""The kit's log: a rotating file in the data folder, for whoever fixes a failing booth.

Set up once per process by :func:`setup`. Handled failures are logged with their
traceback by :func:`failure`. Nothing personal is written: messages are the kit's own
fixed words, and a traceback keeps the frames and the exception's type but drops its
message, which may quote what was typed (a name, a phone number, an answer).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import traceback
from pathlib import Path
from types import TracebackType

LOG_FILE = "popup-kit.log"
MAX_BYTES = 1_000_000
BACKUPS = 3
# The kit's own loggers; libraries' loggers are left out (they may log request details).
KIT_LOGGERS = ("popup_kit", "sync", "printouts", "forms")

log = logging.getLogger("popup_kit")
_handler: logging.Handler | None = None


def log_path(data_dir: Path) -> Path:
    return data_dir / LOG_FILE


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """Rotates like its parent; every file it opens is 0600."""

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8")


class _WithoutMessages(logging.Formatter):
    def formatException(
        self,
        ei: tuple[type[BaseException], BaseException, TracebackType | None]
        | tuple[None, None, None],
    ) -> str:
        _, value, _ = ei
        if value is None:
            return ""
        parts: list[str] = []
        seen: set[int] = set()
        exc: BaseException | None = value
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            frames = "".join(traceback.format_tb(exc.__traceback__))
            parts.append(
                f"{frames}{type(exc).__module__}.{type(exc).__qualname__} (message withheld)"
            )
            exc = exc.__cause__ or exc.__context__
        return "Traceback (most recent call last, cause below):\n" + "\n".join(parts)


def setup(data_dir: Path) -> Path:
    """Send the kit's loggers to the data folder's rotating log (once per process)."""
    global _handler
    path = log_path(data_dir)
    if _handler is not None:
        return path
    from sync.files import private_dir

    private_dir(data_dir)
    handler = _PrivateRotatingFile(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, delay=True)
    handler.setFormatter(_WithoutMessages("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    for name in KIT_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    _handler = handler
    return path


def teardown() -> None:
    """Detach the log (tests that give each kit its own data folder)."""
    global _handler
    if _handler is None:
        return
    for name in KIT_LOGGERS:
        logging.getLogger(name).removeHandler(_handler)
    _handler.close()
    _handler = None


def failure(what: str) -> None:
    """Log the exception being handled, with ``what`` (fixed words, never user input)."""
    log.error(what, exc_info=True)

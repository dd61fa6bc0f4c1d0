"""Writing the kit's files: whole or not at all, readable by the kit's user only.

``atomic_write`` writes a temporary file in the same folder, fsyncs it, renames it over
the target and fsyncs the folder, so a crash leaves the old file or the new one, never
half of either. Files are created 0600 and folders 0700 whoever creates them first.
``shred`` overwrites a file's bytes with zeros before removing it (on a journalling or
flash file system the old blocks may survive elsewhere; the store's own data is protected
by encryption, this removes the plain copy the file system still points at).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


class SharedFolder(OSError):
    """A folder others may write in (``/tmp``, say): never made private, never used."""


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can open (created if missing).

    A folder others may write in (world-writable or sticky, like ``/tmp``) is refused
    rather than changed: taking it over would break everyone else's use of it, and files
    in it are not private."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    mode = path.stat().st_mode
    if mode & (stat.S_ISVTX | stat.S_IWOTH):
        raise SharedFolder(
            f"{path} is a folder others can write in: give the data a folder of its own "
            f"(for example {path / 'popup-kit'})"
        )
    os.chmod(path, DIR_MODE)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically and durably, mode 0600."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return path


def shred(path: Path) -> None:
    """Overwrite ``path`` with zeros, fsync, then remove it (missing is fine)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        block = b"\0" * 65536
        written = 0
        while written < size:
            written += os.write(fd, block[: min(len(block), size - written)])
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)

"""Sending a PDF to a CUPS printer with ``lp``, always keeping a copy on disk.

Printing never loses the slip: the PDF is saved first, and when there is no printer,
no ``lp`` or the job fails, the result says so in one line with the saved path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PrintResult:
    printed: bool
    path: Path
    message: str


def slip_filename(code: str, fmt: str, kind: str = "slip") -> str:
    """``K7M3Q-X9P2C-AW4T7-receipt80.pdf`` (``-consent`` inserted for a consent copy)."""
    return f"{code}{'-consent' if kind == 'consent' else ''}-{fmt}.pdf"


def save_pdf(pdf: bytes, directory: Path, filename: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pdf)
    os.replace(tmp, path)
    return path


def print_pdf(
    pdf: bytes,
    printer_name: str,
    save_dir: Path,
    filename: str,
    *,
    lp_command: str = "lp",
    timeout: float = 20.0,
) -> PrintResult:
    """Save ``pdf`` under ``save_dir`` and print it on ``printer_name`` with ``lp``.

    Never raises for a printer or disk problem: ``message`` is one line saying what
    happened and where the PDF is (the temporary directory if ``save_dir`` is unwritable).
    """
    try:
        path = save_pdf(pdf, save_dir, filename)
        saved = f"slip saved to {path}"
    except OSError as exc:
        path = save_pdf(pdf, Path(tempfile.gettempdir()), filename)
        saved = f"could not save in {save_dir} ({exc.strerror or exc}); slip saved to {path}"
    if not printer_name.strip():
        return PrintResult(False, path, f"no printer set in kit.toml ([printer] name); {saved}")
    lp = shutil.which(lp_command)
    if lp is None:
        return PrintResult(
            False, path, f"cannot print: CUPS `{lp_command}` is not installed; {saved}"
        )
    try:
        done = subprocess.run(
            [lp, "-d", printer_name, "-t", filename, str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return PrintResult(
            False,
            path,
            f"printing on {printer_name} failed: CUPS did not answer (timed out after "
            f"{timeout:g} s); {saved}",
        )
    except OSError as exc:
        return PrintResult(
            False,
            path,
            f"printing on {printer_name} failed: {exc.strerror or exc}; {saved}",
        )
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        why = reason[0] if reason else f"lp exit code {done.returncode}"
        return PrintResult(False, path, f"printing on {printer_name} failed: {why}; {saved}")
    job = done.stdout.strip()
    return PrintResult(True, path, f"sent to {printer_name}{f' ({job})' if job else ''}")

"""Sending a PDF to a CUPS printer, always keeping a copy on disk, and saying what happened.

The PDF is saved first. Before sending, the queue is checked (``lpstat -r``, ``-p``,
``-a``): CUPS not running, no such printer, a paused printer and one rejecting jobs each
get their own one-line message saying what to do, and nothing is queued to come out
later. The job carries the printout's own paper size (``-o media=...``, no scaling), so a
driver whose default is a small label never shrinks a slip. After sending, the job is
watched until CUPS has finished it; one still waiting after ``wait`` seconds is cancelled
(so it cannot come out later in the middle of other visits) and reported as not printed.

"Printed" means CUPS finished the job: the printer took all of it. Whether paper came
out is for the volunteer's eyes.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sync.files import atomic_write

MM = 72 / 25.4
A6_MM = (105.0, 148.0)

# Why a printout was not printed (PrintResult.problem); "" when it was.
PROBLEMS = (
    "no_printer",  # [printer] name is empty
    "no_cups",  # the CUPS commands are not installed
    "cups_down",  # no scheduler answers
    "no_such_printer",
    "paused",  # cupsdisable, or stopped after an error
    "rejecting",  # cupsreject
    "cups_timeout",  # a CUPS command did not answer
    "send_failed",  # lp refused the job
    "job_failed",  # CUPS gave up on the job (filter or driver error)
    "not_finished",  # still waiting after the wait: cancelled
    "unknown",  # CUPS stopped answering after the job was sent
    "unsaved",  # the PDF could be saved nowhere: nothing was sent
)


@dataclass(frozen=True)
class PrintResult:
    printed: bool
    path: Path
    message: str
    problem: str = ""  # one of PROBLEMS, "" when printed
    job: str = ""  # the CUPS job id (e.g. "Thermal80-7") once one was made


class _CupsError(Exception):
    def __init__(self, problem: str, text: str) -> None:
        super().__init__(text)
        self.problem = problem
        self.text = text


def slip_filename(code: str, fmt: str, kind: str = "slip") -> str:
    """``K7M3Q-X9P2C-AW4T7-receipt80.pdf`` (``-consent`` inserted for a consent copy)."""
    return f"{code}{'-consent' if kind == 'consent' else ''}-{fmt}.pdf"


def save_pdf(pdf: bytes, directory: Path, filename: str) -> Path:
    return atomic_write(directory / filename, pdf)


_MEDIABOX = re.compile(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]")


def page_size_mm(pdf: bytes) -> tuple[float, float] | None:
    """The first page's size in millimetres, from its MediaBox (None if none is found)."""
    found = _MEDIABOX.search(pdf)
    if found is None:
        return None
    x0, y0, x1, y1 = (float(v) for v in found.groups())
    return abs(x1 - x0) / MM, abs(y1 - y0) / MM


def media_option(pdf: bytes) -> str | None:
    """The CUPS ``media`` value for the PDF's own page size.

    A6 by its standard name (a label printer's driver lists it); anything else, such as
    a receipt as long as its content, as a custom size rounded up to a tenth of a
    millimetre, so the page is never smaller than the printout and never scaled.
    """
    size = page_size_mm(pdf)
    if size is None:
        return None
    width, height = size
    if abs(width - A6_MM[0]) < 0.5 and abs(height - A6_MM[1]) < 0.5:
        return "iso_a6_105x148mm"

    def up(mm: float) -> str:
        return f"{math.ceil(round(mm * 10, 6)) / 10:g}"

    return f"Custom.{up(width)}x{up(height)}mm"


def _env() -> dict[str, str]:
    # CUPS messages are parsed: ask for them untranslated (CUPS_SERVER etc. pass through).
    return {**os.environ, "LC_ALL": "C", "LANG": "C", "LANGUAGE": ""}


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=_env()
        )
    except subprocess.TimeoutExpired:
        raise _CupsError(
            "cups_timeout",
            f"CUPS did not answer within {timeout:g} s: restart it with "
            "`sudo systemctl restart cups`, then print again",
        ) from None
    except OSError as exc:
        raise _CupsError("no_cups", f"cannot run {command[0]}: {exc.strerror or exc}") from None


def _first_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
    return lines[0] if lines else f"exit code {done.returncode}"


def _reason(lines: list[str], index: int) -> str:
    """The indented reason CUPS prints on the line after a state line, if any."""
    if index + 1 < len(lines) and lines[index + 1].startswith(("\t", " ")):
        return lines[index + 1].strip()
    return ""


def _destinations(lpstat: str, timeout: float) -> list[str]:
    done = _run([lpstat, "-e"], timeout)
    return sorted(line.split()[0] for line in done.stdout.splitlines() if line.strip())


def check_queue(printer: str, *, lpstat: str, timeout: float) -> None:
    """Raise :class:`_CupsError` unless CUPS runs and ``printer`` exists, is enabled and
    accepts jobs."""
    running = _run([lpstat, "-r"], timeout)
    if "scheduler is running" not in running.stdout:
        raise _CupsError(
            "cups_down",
            "CUPS is not running: start it with `sudo systemctl start cups`, then print again",
        )
    state = _run([lpstat, "-p", printer], timeout)
    if state.returncode != 0 or not state.stdout.strip():
        known = _destinations(lpstat, timeout)
        listed = f"CUPS has {', '.join(known)}" if known else "CUPS has no printers yet"
        raise _CupsError(
            "no_such_printer",
            f"there is no printer {printer} in CUPS ({listed}): set [printer] name in "
            "kit.toml to the name `lpstat -p` shows",
        )
    lines = state.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"printer {printer} ") and " disabled since " in line:
            why = _reason(lines, i)
            said = f" ({why})" if why and why.lower() != "paused" else ""
            raise _CupsError(
                "paused",
                f"printer {printer} is paused{said}: resume it with `cupsenable {printer}` "
                "or from the printer's menu, then print again",
            )
    accepting = _run([lpstat, "-a", printer], timeout)
    lines = accepting.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"{printer} not accepting requests"):
            why = _reason(lines, i)
            said = (
                f" ({why})"
                if why and why.lower() not in ("rejecting jobs", "reason unknown")
                else ""
            )
            raise _CupsError(
                "rejecting",
                f"printer {printer} is not accepting jobs{said}: allow them with "
                f"`cupsaccept {printer}` or from the printer's menu, then print again",
            )


@dataclass(frozen=True)
class _JobState:
    status: str  # the job's own status line ("" if none)
    alerts: tuple[str, ...]  # job-state-reasons


def _job_state(lpstat: str, printer: str, job: str, timeout: float) -> _JobState | None:
    """The job's state while CUPS has not finished it; None once it has."""
    done = _run([lpstat, "-l", "-W", "not-completed", "-o", printer], timeout)
    if done.returncode != 0:
        raise _CupsError(
            "unknown",
            f"CUPS stopped answering after job {job} was sent ({_first_line(done)}): once it "
            f"is back, `lpstat -o` shows whether the job still waits; `cancel {job}` stops it",
        )
    lines = done.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.split(" ", 1)[0] != job:
            continue
        status = ""
        alerts: tuple[str, ...] = ()
        for detail in lines[i + 1 :]:
            if not detail.startswith(("\t", " ")):
                break
            key, _, value = detail.strip().partition(":")
            if key == "Status":
                status = value.strip()
            elif key == "Alerts":
                alerts = tuple(value.split())
        return _JobState(status, alerts)
    return None


def _printer_message(lpstat: str, printer: str, timeout: float) -> str:
    lines = _run([lpstat, "-p", printer], timeout).stdout.splitlines()
    return _reason(lines, 0) if lines else ""


def _wait_for_job(
    lpstat: str, printer: str, job: str, *, wait: float, timeout: float
) -> _JobState | None:
    """Poll until CUPS has finished the job (None) or ``wait`` has passed (its state)."""
    deadline = time.monotonic() + wait
    pause = 0.05
    while True:
        state = _job_state(lpstat, printer, job, timeout)
        if state is None:
            return None
        if "job-completed-with-errors" in state.alerts or "aborted-by-system" in state.alerts:
            return state  # stopped on an error: it will not finish by itself
        if time.monotonic() >= deadline:
            return state
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.25)  # a slip takes about a second: answer soon after


def _cancel(cancel: str | None, job: str, timeout: float) -> bool:
    if cancel is None:
        return False
    try:
        return _run([cancel, job], timeout).returncode == 0
    except _CupsError:
        return False


def print_pdf(
    pdf: bytes,
    printer_name: str,
    save_dir: Path,
    filename: str,
    *,
    what: str = "slip",
    media: str | None = None,
    lp_command: str = "lp",
    timeout: float = 20.0,
    wait: float = 20.0,
) -> PrintResult:
    """Save ``pdf`` under ``save_dir`` and print it on ``printer_name``.

    ``what`` names the printout in messages ("slip", "consent copy", "day summary").
    ``media`` overrides the paper size taken from the PDF. ``timeout`` bounds each CUPS
    command; ``wait`` is how long a sent job may take before it counts as not printed.
    Never raises for a printer or disk problem: ``message`` is one line saying what
    happened, what to do and where the PDF is (the temporary folder if ``save_dir`` is
    unwritable).
    """
    try:
        path = save_pdf(pdf, save_dir, filename)
        saved = f"{what} saved to {path}"
    except OSError as exc:
        fallback = Path(tempfile.gettempdir())
        try:
            path = save_pdf(pdf, fallback, filename)
        except OSError:
            return PrintResult(
                False,
                save_dir / filename,
                f"could not save the {what} in {save_dir} or {fallback} "
                f"({exc.strerror or exc}): free some disk space, then print again",
                "unsaved",
            )
        saved = f"could not save in {save_dir} ({exc.strerror or exc}); {what} saved to {path}"
    printer = printer_name.strip()
    if not printer:
        return PrintResult(
            False, path, f"no printer set: set [printer] name in kit.toml; {saved}", "no_printer"
        )
    lp = shutil.which(lp_command)
    lpstat = shutil.which("lpstat", path=str(Path(lp).parent)) if lp else None
    lpstat = lpstat or shutil.which("lpstat")
    if lp is None or lpstat is None:
        return PrintResult(
            False,
            path,
            "cannot print: the CUPS commands (lp, lpstat) are not installed: "
            f"`sudo apt-get install cups-client`; {saved}",
            "no_cups",
        )
    cancel = shutil.which("cancel", path=str(Path(lp).parent)) or shutil.which("cancel")
    job = ""
    try:
        check_queue(printer, lpstat=lpstat, timeout=timeout)
        command = [lp, "-d", printer, "-t", filename]
        chosen = media or media_option(pdf)
        if chosen:
            command += ["-o", f"media={chosen}"]
        command += ["-o", "print-scaling=none", "-o", "fit-to-page=false", str(path)]
        sent = _run(command, timeout)
        if sent.returncode != 0:
            why = _first_line(sent).removeprefix(f"{lp}: ").removeprefix("lp: ").rstrip(".")
            raise _CupsError("send_failed", f"CUPS refused the {what} for {printer} ({why})")
        found = re.search(r"request id is (\S+)", sent.stdout)
        if found is None:
            raise _CupsError(
                "unknown", f"CUPS took the {what} for {printer} but gave no job id: {sent.stdout}"
            )
        job = found.group(1)
        state = _wait_for_job(lpstat, printer, job, wait=wait, timeout=timeout)
        if state is not None:
            failed = "job-completed-with-errors" in state.alerts
            why = state.status or _printer_message(lpstat, printer, timeout)
            if not why and "job-hold-until-specified" in state.alerts:
                why = "the job is held"
            stopped = (
                "the job was cancelled so it cannot come out later"
                if _cancel(cancel, job, timeout)
                else f"cancel it with `cancel {job}` or it may come out later"
            )
            if failed:
                raise _CupsError(
                    "job_failed",
                    f"printer {printer} could not print the {what} ({why or 'driver error'}); "
                    f"{stopped}",
                )
            said = f" ({why})" if why else ""
            raise _CupsError(
                "not_finished",
                f"printer {printer} did not print the {what} within {wait:g} s{said}; "
                f"{stopped}: check the printer's power, paper and cable, then print again",
            )
    except _CupsError as exc:
        return PrintResult(False, path, f"{exc.text}; {saved}", exc.problem, job)
    return PrintResult(True, path, f"{what} printed on {printer} (job {job})", "", job)

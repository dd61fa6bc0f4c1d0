"""A private CUPS scheduler with cups-pdf virtual printers, for the printing tests.

cupsd runs from its own configuration, spool, cache, logs and socket under a temporary
folder, so the tests neither need nor disturb a system CUPS: ``CUPS_SERVER=SOCKET``
points ``lp`` and ``lpstat`` at it. cups-pdf reads its configuration only from
``/etc/cups`` (the path is compiled in), so the private cupsd runs in a mount namespace
of its own in which the temporary configuration folder is bind-mounted on ``/etc/cups``;
each virtual printer ``cups-pdf:/NAME`` then reads ``cups-pdf-NAME.conf`` there, whose
``Out`` is that printer's own output folder. The real ``/etc/cups`` is never written.

Root is needed: the cups-pdf backend is mode 0700, which CUPS runs as root, and only a
cupsd started as root can do that; the bind mount needs root too.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

BACKEND = Path("/usr/lib/cups/backend/cups-pdf")
PPD_GLOBS = ("/usr/share/ppd/cups-pdf/CUPS-PDF_opt.ppd", "/usr/share/cups/model/CUPS-PDF*.ppd")
COMMANDS = ("cupsd", "lp", "lpstat", "lpadmin", "cupsenable", "cupsdisable", "cupsreject")


class CupsUnavailable(RuntimeError):
    """What a private cupsd with cups-pdf needs is missing here."""


def _ppd() -> Path | None:
    for pattern in PPD_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


@dataclass(frozen=True)
class PdfPrinter:
    """A cups-pdf queue and the folder its PDFs land in."""

    name: str
    out: Path

    def outputs(self) -> list[Path]:
        return sorted(self.out.glob("*.pdf"), key=lambda p: p.stat().st_mtime_ns)


class PrivateCups:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc"
        self.socket = root / "run" / "cups.sock"
        self.log = root / "log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CUPS_SERVER": str(self.socket), "LC_ALL": "C", "LANG": "C"}

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A CUPS command against this scheduler (``lpadmin``, ``cupsdisable``, ...)."""
        binary = _which(command[0]) or command[0]
        return subprocess.run(
            [binary, *command[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
        )

    # --- the scheduler ---------------------------------------------------------------

    def _write_config(self) -> None:
        for sub in ("etc/ppd", "spool", "cache", "state", "log", "run", "pdf-spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "spool" / "tmp").mkdir(exist_ok=True)
        for path in (self.root / "spool" / "tmp", self.root / "pdf-spool"):
            path.chmod(0o1777)
        r = self.root
        (self.etc / "cups-files.conf").write_text(
            f"ServerRoot {self.etc}\nRequestRoot {r}/spool\nTempDir {r}/spool/tmp\n"
            f"CacheDir {r}/cache\nStateDir {r}/state\nErrorLog {r}/log/error_log\n"
            f"AccessLog {r}/log/access_log\nPageLog {r}/log/page_log\n"
            "User lp\nGroup lp\nSystemGroup root\nFileDevice No\n"
        )
        # Anyone on this socket may administer: it is a throwaway scheduler for tests.
        (self.etc / "cupsd.conf").write_text(
            f"LogLevel info\nListen {self.socket}\nBrowsing Off\nBrowseLocalProtocols none\n"
            "DefaultAuthType None\nWebInterface No\nJobRetryInterval 5\n"
            "<Location />\n  Order allow,deny\n  Allow all\n</Location>\n"
            "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n"
        )

    @property
    def running(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        return "scheduler is running" in self.run("lpstat", "-r", check=False).stdout

    def start(self) -> None:
        cupsd = _which("cupsd")
        assert cupsd is not None
        script = 'mount --bind "$1" /etc/cups && exec "$2" -f -c "$3" -s "$4"'
        with (self.log / "cupsd.out").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    *("unshare", "--mount", "--propagation", "private", "--"),
                    *("sh", "-c", script, "sh", str(self.etc), cupsd),
                    *(str(self.etc / "cupsd.conf"), str(self.etc / "cups-files.conf")),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not self.running:
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (self.log / "cupsd.out").read_text(errors="replace")[-500:]
                self.stop()
                raise CupsUnavailable(f"the private cupsd did not start: {tail.strip()}")
            time.sleep(0.05)  # no event to await: cupsd offers nothing before its socket

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    # --- printers --------------------------------------------------------------------

    def add_pdf_printer(
        self, name: str | None = None, *, options: tuple[str, ...] = ()
    ) -> PdfPrinter:
        """A cups-pdf queue (``options`` as for ``lpadmin -o``, e.g. a default page size)."""
        name = name or f"pdf{uuid.uuid4().hex[:10]}"
        out = self.root / "out" / name
        out.mkdir(parents=True)
        spool = self.root / "pdf-spool"
        (self.etc / f"cups-pdf-{name}.conf").write_text(
            f"Out {out}\nAnonDirName {out}\nSpool {spool}\nLog {self.log}\n"
            f"GSTmp {self.root}/spool/tmp\nLabel 2\nGrp root\n"
        )
        self._add(name, f"cups-pdf:/{name}", options)
        return PdfPrinter(name, out)

    def add_unreachable_printer(self, name: str | None = None) -> str:
        """A network printer that is switched off: nothing listens on its port."""
        name = name or f"off{uuid.uuid4().hex[:10]}"
        self._add(name, f"socket://127.0.0.1:{free_port()}", ())
        return name

    def _add(self, name: str, uri: str, options: tuple[str, ...]) -> None:
        ppd = _ppd()
        assert ppd is not None
        extra = [arg for opt in options for arg in ("-o", opt)]
        self.run("lpadmin", "-p", name, "-E", "-v", uri, "-P", str(ppd), *extra)

    def wait_until_done(self, printer: str, timeout: float = 60) -> None:
        """Until CUPS has finished every job of ``printer`` (cups-pdf has written it)."""
        deadline = time.monotonic() + timeout
        while self.jobs(printer):
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs of {printer} still waiting after {timeout:g} s")
            time.sleep(0.05)  # no event to await from the command line

    def jobs(self, printer: str, which: str = "not-completed") -> list[str]:
        out = self.run("lpstat", "-W", which, "-o", printer, check=False).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]


def unavailable_reason() -> str | None:
    """Why a private cupsd with cups-pdf cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (the cups-pdf backend runs only under a cupsd started as root)"
    missing = [name for name in (*COMMANDS, "unshare", "mount") if _which(name) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install cups printer-driver-cups-pdf)"
    if not BACKEND.exists() or _ppd() is None:
        return "cups-pdf is not installed (apt-get install printer-driver-cups-pdf)"
    if not Path("/etc/cups").is_dir():
        return "/etc/cups is missing (apt-get install cups)"
    return None


@contextmanager
def private_cups() -> Iterator[PrivateCups]:
    """Start a private cupsd; stop it and remove its folder afterwards."""
    reason = unavailable_reason()
    if reason:
        raise CupsUnavailable(reason)
    root = Path(tempfile.mkdtemp(prefix="popup-kit-cups-"))
    root.chmod(0o755)  # the filters run as lp and read the spool below
    cups = PrivateCups(root)
    try:
        cups._write_config()
        cups.start()
        yield cups
    finally:
        cups.stop()
        shutil.rmtree(root, ignore_errors=True)

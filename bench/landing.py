"""The attendee's landing page under load: `server run` on PostgreSQL, 4 workers against 1.

Usage: uv run python bench/landing.py [--seconds 15] [--connections 32] [--workers 4]

A throwaway PostgreSQL cluster; one kit enrolled, one urgent visit synced; then wrk (a
second process) asks for that slip's signed page over and over, first from a server with
one worker, then from one with ``--workers``. Every request goes through both limits (the
per-network bucket is an UPSERT in PostgreSQL; the allowance is set high so that none is
refused) and the page is the full "next steps" page. All requests come from one address,
so they all update one bucket row: the worst case, a whole market behind one NAT.
Prints requests/s and latency percentiles for each, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from printouts.codes import new_referral_code
from printouts.payload import slip_url
from sync.server.store import ServerStore
from tests.support.pg import create_database, postgres_cluster
from tests.support.ports import free_port
from tests.sync.live_server import LiveServer, consent_record, enroll_kit, ingest, visit_record


def _start(db: str, folder: Path, workers: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    config = folder / f"server-{workers}.toml"
    config.write_text(
        f'database_url = "{db}"\nkey_file = "{folder / "key.pem"}"\nport = {port}\n'
        f"workers = {workers}\nlanding_rate_count = 100000000\nlanding_rate_period = 60.0\n"
    )
    log = folder / f"server-{workers}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "popup_kit", "server", "run", "--config", str(config)],
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 120
    while log.read_text().count("Application startup complete") < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}", log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        figures[f"p{pct}"] = float(match.group(1)) * scale
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    figures["non_2xx"] = float(bad.group(1)) if bad else 0.0
    figures["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")
    folder = Path(tempfile.mkdtemp(prefix="popup-kit-landing-bench-"))
    os.chmod(folder, 0o700)
    results: dict[int, dict[str, float]] = {}
    with postgres_cluster(fsync=True) as cluster:
        db = create_database(cluster)
        path = ""
        for workers in (1, args.workers):
            proc, url, _log = _start(db, folder, workers)
            try:
                if not path:
                    store = ServerStore(db)
                    try:
                        live = LiveServer(url, db, store)
                        kit = enroll_kit(live)
                        code = new_referral_code()
                        visit = visit_record(kit.kit_id, code=code, triage="urgent", language="es")
                        visit_id = visit["body"]["visit_id"]
                        ingest(live, kit, [visit, consent_record(kit.kit_id, visit_id)])
                    finally:
                        store.close()
                    full = slip_url("https://triage.example.org", code, kit.slip_key, "es")
                    path = full.removeprefix("https://triage.example.org")
                page = requests.get(url + path, timeout=10)
                assert page.status_code == 200 and "Preferente" in page.text, page.text[:300]
                _wrk(url + path, 3, args.connections)  # warm-up
                results[workers] = _wrk(url + path, args.seconds, args.connections)
            finally:
                _stop(proc)
    shutil.rmtree(folder, ignore_errors=True)
    print(
        f"landing page /r/CODE?s=SIG&l=es, PostgreSQL, wrk -t2 -c{args.connections} "
        f"-d{args.seconds}s, {os.cpu_count()} cores"
    )
    print("workers  requests/s   p50 ms   p90 ms   p99 ms   requests  non-2xx")
    for workers, f in results.items():
        print(
            f"{workers:>7}  {f['rps']:>10.0f}  {f['p50']:>7.1f}  {f['p90']:>7.1f}  "
            f"{f['p99']:>7.1f}  {f['requests']:>9.0f}  {f['non_2xx']:>7.0f}"
        )
    one, many = results[1], results[args.workers]
    print(
        f"ratio {args.workers} workers / 1: requests/s {many['rps'] / one['rps']:.2f}, "
        f"p99 {many['p99'] / one['p99']:.2f}"
    )


if __name__ == "__main__":
    main()

"""Start one of the benches' server scripts in a process of its own; yields its base URL."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from sync import protocol as p
from tests.support.ports import free_port

BENCH = Path(__file__).resolve().parent


@contextlib.contextmanager
def server_process(script: str, db_url: str, *args: str) -> Iterator[str]:
    """``bench/SCRIPT DB_URL PORT ARGS...``, which prints "listening" once bound."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / script), db_url, str(port), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "listening":
            raise RuntimeError(f"the server did not start (exit {proc.wait()})")
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # the socket is bound; wait for the app to answer
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + p.API_PREFIX + "/health", timeout=5).ok:
                    break
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()

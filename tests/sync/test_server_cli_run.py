"""`popup-kit server run` as a coordinator starts it: a real process on a loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from sync import protocol as p
from tests.support.ports import free_port


def test_server_run_serves_the_configured_database(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "server.toml"
    config.write_text(f'database_url = "data/server.sqlite3"\nport = {port}\n')
    (tmp_path / "data").mkdir()
    # The kit's data directory is not the server's: nothing is made there.
    env = {
        **os.environ,
        "POPUP_KIT_DATA_DIR": str(tmp_path / "kitdata"),
        "POPUP_KIT_SERVER_CONFIG": str(config),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "popup_kit", "server", "run"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # uvicorn says when it is listening
            if "Uvicorn running on" in line:
                break
        else:
            raise AssertionError(f"server exited with {proc.wait()}")
        response = requests.get(f"http://127.0.0.1:{port}{p.API_PREFIX}/health", timeout=10)
        assert p.is_protocol_response(response.status_code, response.headers, response.content)
        assert (tmp_path / "data" / "server.sqlite3").exists()
        assert not (tmp_path / "kitdata").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()

"""The server's logs, read as written by `popup-kit server run`: events, and nothing personal."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from popup_kit.cli import main
from printouts.codes import compact_code, new_referral_code
from printouts.payload import parse_slip_url, slip_url
from sync import protocol as p
from tests.sync.live_server import envelope, visit_record


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_logs_carry_events_and_no_codes_signatures_credentials_or_contacts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()
    config = tmp_path / "server.toml"
    config.write_text(f'database_url = "server.sqlite3"\nport = {port}\n')
    cfg = ["--config", str(config)]
    assert main(["server", "migrate", *cfg]) == 0
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="popup_kit.server"):
        assert main(["server", "enroll", "kit-log", "--json", *cfg]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    assert any('"event": "enrolment_token"' in r.getMessage() for r in caplog.records)
    assert all(token not in r.getMessage() for r in caplog.records)

    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "popup_kit", "server", "run", *cfg],
            env={**os.environ, "POPUP_KIT_SERVER_CONFIG": ""},
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a shared machine can be slow to start it
        while True:
            try:
                requests.get(f"{base}{p.API_PREFIX}/health", timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        slip_key = secrets.token_bytes(32)
        enrolled = requests.post(
            f"{base}{p.API_PREFIX}/enroll",
            json={
                "token": token,
                "kit_id": "kit-log",
                "slip_key": base64.b64encode(slip_key).decode(),
            },
            timeout=10,
        )
        assert enrolled.status_code == 200
        credential = enrolled.json()["credential"]
        contact = {"name": "Maria Lopez", "phone": "+44 7700 900123"}
        code = new_referral_code()
        record = visit_record("kit-log", code=code, contact=contact)
        body = {"kit_id": "kit-log", "records": [envelope(record)]}
        ok = requests.post(
            f"{base}{p.API_PREFIX}/ingest",
            json=body,
            headers=p.auth_header("kit-log", credential),
            timeout=10,
        )
        assert ok.status_code == 200
        wrong = requests.post(
            f"{base}{p.API_PREFIX}/ingest",
            json=body,
            headers=p.auth_header("kit-log", "not-the-credential"),
            timeout=10,
        )
        assert wrong.status_code == 401
        url = slip_url(base, code, slip_key)
        _base, _code, sig = parse_slip_url(url)
        assert requests.get(url, timeout=10).status_code == 200
        requests.get(f"{base}/r/{code}", timeout=10)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    text = log_path.read_text()
    lines = [json.loads(line.split(" INFO ", 1)[1]) for line in text.splitlines() if '{"' in line]
    events = [line for line in lines if "event" in line]
    assert {"event": "enrolled", "kit_id": "kit-log"} in events
    assert {"event": "ingest", "kit_id": "kit-log", "records": 1, "accepted": 1} in events
    assert any(e["event"] == "refused" and e["status"] == 401 for e in events)
    routes = [line["route"] for line in lines if "route" in line and "method" in line]
    assert "/r/{code}" in routes and f"{p.API_PREFIX}/ingest" in routes
    for secret in (token, credential, sig, code, compact_code(code), "Maria", "900123"):
        assert secret not in text, secret
    # No client address: only the listening address appears, once.
    assert text.count("127.0.0.1") == 1

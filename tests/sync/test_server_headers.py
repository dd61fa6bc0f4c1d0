"""Attendee pages that leak nothing: the bare code, headers, forwarded-header spoofing."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
import requests

from sync.server import landing
from tests.sync.live_server import (
    LiveServer,
    ManualClock,
    PlainCodes,
    enroll_kit,
    ingest,
    run_server,
    visit_record,
)

CODES = PlainCodes()


def test_bare_code_gets_the_generic_page(db_url: str) -> None:
    with run_server(db_url, code_rules=CODES) as server:
        kit = enroll_kit(server)
        record = visit_record(kit.kit_id, code="AAAA-BBBB-CCCC", triage="urgent")
        assert ingest(server, kit, [record]).status_code == 200
        signed = requests.get(
            f"{server.url}/r/AAAA-BBBB-CCCC",
            params={"s": CODES.sign("AAAA-BBBB-CCCC", kit.slip_key)},
            timeout=10,
        )
        assert signed.status_code == 200
        bare = requests.get(f"{server.url}/r/AAAA-BBBB-CCCC", timeout=10)
        unknown = requests.get(f"{server.url}/r/ZZZZ-ZZZZ-ZZZZ", timeout=10)
        # Known and unknown look the same without the signature: no level, no hint.
        assert bare.status_code == unknown.status_code == 404
        assert bare.text == unknown.text.replace("ZZZZ-ZZZZ-ZZZZ", "AAAA-BBBB-CCCC")
        assert "urgent" not in bare.text.lower() and bare.text != signed.text


def _attendee_pages(server: LiveServer, clock: ManualClock) -> list[requests.Response]:
    kit = enroll_kit(server)
    code = "AAAA-BBBB-CCCC"
    ok = requests.get(
        f"{server.url}/r/{code}", params={"s": CODES.sign(code, kit.slip_key)}, timeout=10
    )
    missing = requests.get(f"{server.url}/r/NOPE", timeout=10)
    limited = None
    for _ in range(30):
        limited = requests.get(f"{server.url}/r/NOPE", timeout=10)
    assert limited is not None and limited.status_code == 429
    return [ok, missing, limited]


def test_headers_on_every_attendee_page(sqlite_url: str) -> None:
    clock = ManualClock()
    with run_server(
        sqlite_url, code_rules=CODES, rate_clock=clock, landing_rate=(20, 60.0)
    ) as server:
        pages = _attendee_pages(server, clock)
        assert [p.status_code for p in pages] == [200, 404, 429]
        for page in pages:
            h = page.headers
            assert h["Cache-Control"] == "no-store"
            assert h["X-Content-Type-Options"] == "nosniff"
            assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
            assert "unsafe-inline" not in h["Content-Security-Policy"]
            assert "Strict-Transport-Security" not in h  # the public URL is not https
            # No script, and nothing from another origin.
            assert "<script" not in page.text.lower()
            assert not re.search(r"(src|href)=[\"']?(https?:)?//", page.text)
        # The one inline style is allowed by its hash.
        digest = base64.b64encode(hashlib.sha256(landing.STYLE.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in pages[0].headers["Content-Security-Policy"]
        assert f"<style>{landing.STYLE}</style>" in pages[0].text


def test_hsts_when_public_url_is_https(sqlite_url: str) -> None:
    with run_server(sqlite_url, public_url="https://triage.example.org") as server:
        page = requests.get(f"{server.url}/r/NOPE", timeout=10)
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")


def test_docs_off_unless_configured(sqlite_url: str) -> None:
    with run_server(sqlite_url, docs=False) as server:
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert requests.get(server.url + path, timeout=10).status_code == 404


@pytest.mark.parametrize("trusted", [False, True])
def test_forwarded_for_believed_only_from_trusted_proxies(db_url: str, trusted: bool) -> None:
    clock = ManualClock()
    proxies = ["127.0.0.0/8"] if trusted else None
    with run_server(
        db_url, code_rules=CODES, rate_clock=clock, landing_rate=(3, 60.0), trusted_proxies=proxies
    ) as server:
        statuses = [
            requests.get(
                f"{server.url}/r/NOPE",
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
                timeout=10,
            ).status_code
            for i in range(6)
        ]
    if trusted:
        # Behind the configured proxy each forwarded address is its own client.
        assert statuses == [404] * 6
    else:
        # A caller cannot dodge the limit by naming another address.
        assert statuses == [404, 404, 404, 429, 429, 429]

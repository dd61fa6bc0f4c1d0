"""The clinicians' pages for tests: the real server on a loopback port with its settings
and a clock the test moves, accounts, signed-in browser sessions and referrals in the
shapes kits send."""

from __future__ import annotations

import hashlib
import re
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import uvicorn

from sync.bodies import BODY_VERSION, Booth, Contact, visit_body
from sync.records import make_record
from sync.server.accounts import Accounts
from sync.server.app import build_app
from sync.server.settings import ServerSettings
from tests.sync.live_server import EnrolledKit, LiveServer, ingest

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


class SetClock:
    """The server's clock, moved only by the test."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **span: float) -> None:
        self.now += timedelta(**span)


@dataclass
class Clinic:
    live: LiveServer
    clock: SetClock
    accounts: Accounts

    @property
    def url(self) -> str:
        return self.live.url + "/clinic"


@contextmanager
def run_clinic(db_url: str, **settings: Any) -> Iterator[Clinic]:
    clock = SetClock()
    if not db_url.startswith("sqlite"):
        name = hashlib.sha256(db_url.encode()).hexdigest()[:16]
        settings.setdefault("key_file", str(Path(tempfile.gettempdir()) / "popup-kit-keys" / name))
    app = build_app(ServerSettings(database_url=db_url, **settings), clock=clock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    store = app.state.store
    try:
        yield Clinic(LiveServer(f"http://127.0.0.1:{port}", db_url, store), clock, Accounts(store))
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def browser() -> requests.Session:
    return requests.Session()


def sign_in(clinic: Clinic, name: str, password: str = PASSWORD) -> requests.Session:
    """A browser signed in as ``name`` (asserts it worked)."""
    web = browser()
    response = try_sign_in(clinic, web, name, password)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/clinic/"
    return web


def try_sign_in(
    clinic: Clinic, web: requests.Session, name: str, password: str
) -> requests.Response:
    form = web.get(clinic.url + "/signin", timeout=10)
    return web.post(
        clinic.url + "/signin",
        data={"csrf": csrf_of(form.text), "name": name, "password": password},
        allow_redirects=False,
        timeout=10,
    )


def page_csrf(clinic: Clinic, web: requests.Session) -> str:
    return csrf_of(web.get(clinic.url + "/", timeout=10).text)


def referral_records(
    kit_id: str,
    code: str,
    *,
    level: str = "routine",
    visit_at: datetime = NOW - timedelta(hours=1),
    c2: bool = True,
    c3: bool = True,
    phone: str | None = "+44 7700 900123",
    age: int = 47,
    rules: tuple[str, ...] = ("RO1",),
    status: str = "active",
    event: str = "",
    booth: str | None = None,
    answers: dict[str, Any] | None = None,
    language: str = "en",
) -> list[dict[str, Any]]:
    """A visit and its consent, as a kit sends them (typed bodies, cut to the consent)."""
    visit_id = str(uuid.uuid4())
    stamp = visit_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    items = {"c1": True, "c2": c2, "c3": c3, "c4": False, "c5": False}
    body = visit_body(
        visit_id=visit_id,
        version=1,
        supersedes=None,
        status=status,
        void_reason=None,
        referral_code=code,
        visit_created_at=stamp,
        created_at=stamp,
        volunteer="Ana",
        language=language,
        answers=answers or {"age_years": age, "leg_pain_side": "unilateral", "pain_nrs": 6},
        outcome={"triage": level, "rules": list(rules), "ruleset_version": "2026.11-1"},
        forms_version="2026.1",
        booth=Booth(name=booth or kit_id, event=event, emergency_number="999"),
        consent=items,
        contact=None if phone is None else Contact(name="Sam Example", phone=phone),
    )
    return [
        consent_change(kit_id, visit_id, items, at=visit_at, kind="initial"),
        _visit(kit_id, stamp, body),
    ]


def _visit(kit_id: str, stamp: str, body: dict[str, Any]) -> dict[str, Any]:
    return make_record(
        record_id=str(uuid.uuid4()),
        record_type="visit",
        kit_id=kit_id,
        created_at=stamp,
        body=body,
        schema_version=BODY_VERSION,
    )


def consent_change(
    kit_id: str, visit_id: str, items: dict[str, bool], *, at: datetime, kind: str = "change"
) -> dict[str, Any]:
    """A consent event for ``visit_id`` (the initial one, or a later change)."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    consent_id = str(uuid.uuid4())
    return make_record(
        record_id=consent_id,
        record_type="consent",
        kit_id=kit_id,
        created_at=stamp,
        schema_version=BODY_VERSION,
        body={
            "visit_id": visit_id,
            "consent_id": consent_id,
            "kind": kind,
            "items": items,
            "text_version": "2026.1",
            "text_hash": "ab" * 32,
            "language": "en",
            "method": "read_aloud_tap",
            "volunteer": "Ana",
            "at": stamp,
        },
    )


def send(clinic: Clinic, kit: EnrolledKit, records: list[dict[str, Any]]) -> None:
    response = ingest(clinic.live, kit, records)
    response.raise_for_status()
    assert all(r["status"] == "accepted" for r in response.json()["results"]), response.text

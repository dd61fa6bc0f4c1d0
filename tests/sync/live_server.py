"""The real triage server on a loopback port, for tests (and the kit's sync tests)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
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

from sync import protocol as p
from sync.records import make_record
from sync.server import ServerStore, create_app

T0 = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)


class TickingClock:
    """A fixed clock that moves one second each time it is read: distinct, repeatable times."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=1)
            return self._now


class ManualClock:
    """A monotonic-style clock the test moves by hand (for the rate limiter)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class LiveServer:
    url: str
    db_url: str
    store: ServerStore

    def api(self, path: str) -> str:
        return f"{self.url}{p.API_PREFIX}{path}"


@contextmanager
def run_server(db_url: str, *, port: int = 0, **options: Any) -> Iterator[LiveServer]:
    """Start the server in a thread on a loopback port (a free one unless ``port`` is
    given, as for a restart at the same address); stop it on exit."""
    options.setdefault("clock", TickingClock())
    if not db_url.startswith("sqlite"):
        # One key per database, kept across restarts like a deployed server's.
        name = hashlib.sha256(db_url.encode()).hexdigest()[:16]
        options.setdefault("key_file", str(Path(tempfile.gettempdir()) / "popup-kit-keys" / name))
    app = create_app(db_url, **options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)  # connections queue here until the server starts accepting
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", db_url, app.state.store)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@dataclass
class EnrolledKit:
    kit_id: str
    credentials: p.KitCredentials
    slip_key: bytes

    @property
    def headers(self) -> dict[str, str]:
        return self.credentials.headers()


def enroll_kit(
    server: LiveServer, kit_id: str | None = None, *, rekey: bool = False
) -> EnrolledKit:
    kit_id = kit_id or f"kit-{uuid.uuid4().hex[:12]}"
    token = server.store.create_enrollment(kit_id, rekey=rekey)
    slip_key = secrets.token_bytes(32)
    response = requests.post(
        server.api("/enroll"),
        json={"token": token, "kit_id": kit_id, "slip_key": base64.b64encode(slip_key).decode()},
        timeout=10,
    )
    response.raise_for_status()
    answer = p.EnrollResponse.model_validate_json(response.content)
    credentials = p.KitCredentials(
        server_url=server.url,
        kit_id=kit_id,
        credential=answer.credential,
        receipt_key=p.ed25519_receipt_key(base64.b64decode(answer.receipt_key)),
    )
    return EnrolledKit(kit_id, credentials, slip_key)


def visit_record(
    kit_id: str,
    *,
    visit_id: str | None = None,
    code: str = "TEST-CODE-0000",
    triage: str = "routine",
    contact: dict[str, str] | None = None,
    version: int = 1,
    language: str = "en",
) -> dict[str, Any]:
    visit_id = visit_id or str(uuid.uuid4())
    return make_record(
        record_id=str(uuid.uuid4()),
        record_type="visit",
        kit_id=kit_id,
        created_at="2026-11-22T17:30:00Z",
        schema_version=1,
        body={
            "visit_id": visit_id,
            "version": version,
            "supersedes": None,
            "status": "active",
            "void_reason": None,
            "volunteer": "Ana",
            "language": language,
            "age_years": 47,
            "answers": {"age_years": 47, "leg_pain_side": "unilateral", "pain_nrs": 6},
            "outcome": {"triage": triage, "rules": ["RO1"], "ruleset_version": "t+1"},
            "referral_code": code,
            "contact": contact,
            "forms_version": "t",
            "source": "ui",
        },
    )


def consent_record(kit_id: str, visit_id: str, *, c2: bool = True) -> dict[str, Any]:
    return make_record(
        record_id=str(uuid.uuid4()),
        record_type="consent",
        kit_id=kit_id,
        created_at="2026-11-22T17:29:00Z",
        schema_version=1,
        body={
            "visit_id": visit_id,
            "kind": "grant",
            "items": {"c1": True, "c2": c2, "c3": True, "c4": False, "c5": False},
            "text_hash": "ab" * 32,
            "language": "en",
            "method": "read_aloud_tap",
            "volunteer": "Ana",
            "at": "2026-11-22T17:29:00Z",
        },
    )


def withdrawal_record(kit_id: str, visit_id: str) -> dict[str, Any]:
    return make_record(
        record_id=str(uuid.uuid4()),
        record_type="consent_withdrawal",
        kit_id=kit_id,
        created_at="2026-11-22T19:00:00Z",
        schema_version=1,
        body={"visit_id": visit_id, "at": "2026-11-22T19:00:00Z", "reason": "asked by phone"},
    )


def envelope(record: dict[str, Any]) -> dict[str, Any]:
    return p.Envelope.from_record(record).model_dump()


def ingest(
    server: LiveServer, kit: EnrolledKit, records: list[dict[str, Any]]
) -> requests.Response:
    return requests.post(
        server.api("/ingest"),
        json={"kit_id": kit.kit_id, "records": [envelope(r) for r in records]},
        headers=kit.headers,
        timeout=30,
    )


class PlainCodes:
    """Referral-code rules for exercising the landing page on its own: 12 symbols of an
    unambiguous alphabet, dashed in fours, signed with a truncated HMAC-SHA256."""

    ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def new_code(self) -> str:
        raw = "".join(secrets.choice(self.ALPHABET) for _ in range(12))
        return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"

    def sign(self, code: str, secret: bytes) -> str:
        mac = hmac.new(secret, code.encode(), hashlib.sha256).digest()
        return base64.b32encode(mac).decode()[:10]

    def normalize(self, raw: str) -> str | None:
        flat = raw.upper().replace("-", "")
        if len(flat) != 12 or any(ch not in self.ALPHABET for ch in flat):
            return None
        return f"{flat[:4]}-{flat[4:8]}-{flat[8:]}"

    def verify(self, code: str, sig: str, secret: bytes) -> bool:
        return hmac.compare_digest(self.sign(code, secret), sig)


BOOTH = {"name": "Night market booth", "event": "Riverside market", "emergency_number": "112"}


def visit_v2(
    kit_id: str,
    *,
    visit_id: str | None = None,
    code: str = "TEST-CODE-0000",
    triage: str = "routine",
    consent: dict[str, bool] | None = None,
    contact: dict[str, str] | None = None,
    answers: dict[str, Any] | None = None,
    booth: dict[str, str] | None = None,
    version: int = 1,
) -> dict[str, Any]:
    """A visit version as the current kit builds it (``sync.bodies.visit_body``)."""
    from sync import bodies

    scope = {"c2": True, "c3": True, "c4": False} | (consent or {})
    body = bodies.visit_body(
        visit_id=visit_id or str(uuid.uuid4()),
        version=version,
        supersedes=None,
        status="active",
        void_reason=None,
        referral_code=code,
        visit_created_at="2026-11-22T17:20:00.000000Z",
        created_at="2026-11-22T17:30:00.000000Z",
        volunteer="Ana",
        language="en",
        answers=answers or {"age_years": 47, "leg_pain_side": "unilateral", "pain_nrs": 6},
        outcome={"triage": triage, "rules": ["RO1"], "ruleset_version": "t+1"},
        forms_version="t",
        booth=bodies.Booth(**(booth or BOOTH)),
        consent=scope,
        contact=bodies.Contact(**contact) if contact else None,
    )
    return make_record(
        record_id=str(uuid.uuid4()),
        record_type="visit",
        kit_id=kit_id,
        created_at="2026-11-22T17:30:00.000000Z",
        body=body,
    )


def consent_v2(
    kit_id: str, visit_id: str, *, kind: str = "initial", **items: bool
) -> dict[str, Any]:
    """A consent event as the current kit builds it; items default to C1-C3 granted."""
    consent_id = str(uuid.uuid4())
    granted = {"c1": True, "c2": True, "c3": True, "c4": False, "c5": False} | items
    return make_record(
        record_id=consent_id,
        record_type="consent",
        kit_id=kit_id,
        created_at="2026-11-22T17:21:00.000000Z" if kind == "initial" else "2026-11-22T18:40:00Z",
        body={
            "visit_id": visit_id,
            "consent_id": consent_id,
            "kind": kind,
            "items": granted,
            "text_version": "t",
            "text_hash": "ab" * 32,
            "language": "en",
            "method": "read aloud, answered by key",
            "volunteer": "Ana",
            "at": "2026-11-22T17:21:00.000000Z",
        },
    )

"""What the triage server keeps, and the operations on it.

Ingest is idempotent per record on the database's own uniqueness (the record table's
primary key), committed per record, so concurrent kits or relays never duplicate and one
bad record never blocks the others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from sync.bodies import BodyError, check_body, counts_from
from sync.files import private_dir
from sync.protocol import (
    ID_PATTERN,
    Envelope,
    HaveItem,
    Receipt,
    RecordResult,
    SchemaVersionError,
    sign_receipt,
    sign_receipt_ed25519,
    upgrade_body,
)
from sync.server import bookings, visit_facts
from sync.server.db import make_engine, migrate, sqlite_path
from sync.server.events import event
from sync.server.keys import private_file, public_bytes

Clock = Callable[[], datetime]
HOUR = timedelta(hours=1)

# What stays of a visit's records once consent is withdrawn: ids, versions, times, and
# the booth (its name and emergency number, which the slip's page still shows).
_SKELETON_KEYS = (
    "visit_id",
    "version",
    "supersedes",
    "status",
    "at",
    "kind",
    "forms_version",
    "booth",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_KIT_ID = re.compile(ID_PATTERN)


def kit_id_problem(kit_id: str) -> str:
    """Why ``kit_id`` cannot name a kit ('' when it can)."""
    if _KIT_ID.fullmatch(kit_id):
        return ""
    shown = kit_id if len(kit_id) <= 40 else kit_id[:40] + "..."
    return (
        f"{shown!r} is not a valid kit id: 1 to 80 letters, digits, '.', '_', ':' or '-', "
        "starting with a letter or digit (popup-kit info shows the kit's id)"
    )


class AuthError(Exception):
    """A request the server refuses: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class Kit:
    kit_id: str
    receipt_key: bytes
    slip_key: bytes | None
    revoked_reason: str | None


@dataclass(frozen=True)
class StoredRecord:
    record_id: str
    kit_id: str
    record_type: str
    schema_version: int
    content_hash: str
    created_at: str
    received_at: str
    scrubbed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "kit_id": self.kit_id,
            "record_type": self.record_type,
            "schema_version": self.schema_version,
            "content_hash": self.content_hash,
            "created_at": self.created_at,
            "received_at": self.received_at,
            "scrubbed": self.scrubbed,
        }


@dataclass(frozen=True)
class _Prepared:
    """A record that passed every check that needs no database, ready to insert."""

    env: Envelope
    computed: str
    body: dict[str, Any]
    visit_id: str | None
    code: str | None
    withdrawal: bool
    # Consent items a consent record refuses ("c2", "c3"): held visits are cut to match.
    refused: frozenset[str]
    params: dict[str, Any]


@dataclass(frozen=True)
class Referral:
    """What the landing page may know about a code: nothing personal."""

    kit_id: str
    level: str | None
    language: str
    shared: bool
    withdrawn: bool
    void: bool
    # The booth that made the slip, as its visit body says (None for version 1 bodies).
    emergency_number: str | None = None
    booth: str | None = None
    # Whether the booth recorded a way to call back (consent C3 and contact given).
    has_contact: bool = False


# The withdrawal table's record_id when the attendee withdrew on the slip's page.
ATTENDEE_PAGE = "attendee-page"


@dataclass(frozen=True)
class AttendeeWithdrawal:
    """A withdrawal made on the slip's page: only the fact, for the kit whose key signed."""

    kit_id: str
    referral_code: str
    language: str
    withdrawn_at: str
    acknowledged: bool


def _code_key(kit_id: str, code: str) -> str:
    """The advisory-lock name of one kit's referral code (PostgreSQL)."""
    return f"code|{kit_id}|{code}"


def is_withdrawal(record_type: str, body: dict[str, Any]) -> bool:
    """A withdrawal of consent for the whole visit: its own record type, or a consent
    event of kind ``withdrawal`` that no longer grants C1 (recording the answers)."""
    if record_type == "consent_withdrawal":
        return True
    if record_type != "consent" or body.get("kind") != "withdrawal":
        return False
    items = body.get("items")
    return not (isinstance(items, dict) and items.get("c1") is True)


def scrub_body(body: dict[str, Any]) -> dict[str, Any]:
    kept = {k: body[k] for k in _SKELETON_KEYS if k in body}
    kept["withdrawn"] = True
    return kept


class ServerStore:
    def __init__(
        self,
        db_url: str,
        *,
        clock: Clock | None = None,
        token_hours: float = 24.0,
        receipt_key: Ed25519PrivateKey | None = None,
    ) -> None:
        # Without a key file (commands that sign nothing, tests) a key for this process.
        self.receipt_key = receipt_key or Ed25519PrivateKey.generate()
        sqlite_file = sqlite_path(db_url)
        if sqlite_file is not None:
            # Created owner-only, in an owner-only folder; SQLite gives -wal and -shm the
            # database file's mode.
            private_dir(sqlite_file.parent)
            os.close(os.open(sqlite_file, os.O_RDWR | os.O_CREAT, 0o600))
            private_file(sqlite_file)
        self.engine: Engine = make_engine(db_url)
        self.clock: Clock = clock or utc_now
        self.token_lifetime = timedelta(hours=token_hours)
        self.schema_version = migrate(self.engine)
        self._postgres = self.engine.dialect.name == "postgresql"
        self._sql = _driver_sql(self.engine.dialect.name)
        # SQLite takes one writer at a time: queueing this process's writers here is
        # cheaper than SQLite's sleeping busy handler. PostgreSQL needs no such queue.
        self._writers: AbstractContextManager[Any] = (
            nullcontext() if self._postgres else threading.Lock()
        )

    def close(self) -> None:
        self.engine.dispose()

    def _write(self) -> Connection:
        return self.engine.connect().execution_options(sqlite_immediate=True)

    # --- kits -------------------------------------------------------------------------

    def create_enrollment(self, kit_id: str, *, rekey: bool = False) -> str:
        """A one-time enrolment token for ``kit_id``, valid for ``token_hours``; only its
        hash is stored. ``rekey`` lets it replace the keys of a live kit."""
        problem = kit_id_problem(kit_id)
        if problem:
            raise ValueError(problem)
        # Hex, never starting with "-": it is typed as a command-line argument on the kit.
        token = secrets.token_hex(20)
        now = self.clock()
        with self._write() as conn, conn.begin():
            exists = conn.execute(
                text("SELECT 1 FROM kit WHERE kit_id = :k"), {"k": kit_id}
            ).first()
            if exists is None:
                conn.execute(
                    text("INSERT INTO kit (kit_id, created_at) VALUES (:k, :t)"),
                    {"k": kit_id, "t": iso(now)},
                )
            conn.execute(
                text(
                    "INSERT INTO enrollment_token (token_hash, kit_id, created_at, expires_at, "
                    "rekey) VALUES (:h, :k, :t, :e, :r)"
                ),
                {
                    "h": _digest(token),
                    "k": kit_id,
                    "t": iso(now),
                    "e": iso(now + self.token_lifetime),
                    "r": 1 if rekey else 0,
                },
            )
        event("enrolment_token", kit_id=kit_id, rekey=rekey, hours=self.token_lifetime / HOUR)
        return token

    def enroll(self, token: str, kit_id: str, slip_key: bytes) -> tuple[str, bytes]:
        """Exchange a token (once, before it expires) for the kit's credential and receipt
        key. A live kit is only re-keyed by a token made for that; a revoked one by any new
        token."""
        now = iso(self.clock())
        credential = secrets.token_urlsafe(32)
        with self._write() as conn, conn.begin():
            # The UPDATE claims the token atomically: a second use matches no row.
            claimed = conn.execute(
                text(
                    "UPDATE enrollment_token SET used_at = :t "
                    "WHERE token_hash = :h AND kit_id = :k AND used_at IS NULL "
                    "AND expires_at > :t"
                ),
                {"t": now, "h": _digest(token), "k": kit_id},
            )
            if claimed.rowcount != 1:
                raise AuthError(
                    403,
                    "enrollment_refused",
                    "this enrolment token is unknown, already used, expired or for another "
                    "kit; ask the coordinator for a new one (popup-kit server enroll KIT_ID)",
                )
            rekey = conn.execute(
                text("SELECT rekey FROM enrollment_token WHERE token_hash = :h"),
                {"h": _digest(token)},
            ).scalar_one()
            row = conn.execute(
                text(
                    "SELECT revoked_at, enrolled_at, receipt_key, credential_hash FROM kit "
                    "WHERE kit_id = :k"
                ),
                {"k": kit_id},
            ).one()
            revoked, live = row[0] is not None, row[1] is not None and row[3] is not None
            if live and not revoked and not rekey:
                # Rolled back with the claim: the token stays usable once the kit is revoked.
                raise AuthError(
                    409,
                    "kit_enrolled",
                    f"kit {kit_id} is already enrolled; the coordinator must revoke it "
                    f"(popup-kit server revoke {kit_id}) or make a re-key token "
                    f"(popup-kit server enroll {kit_id} --rekey)",
                )
            # Receipts are signed with the server's Ed25519 key from now on: no per-kit
            # receipt secret is kept (receipt_key stays only for kits enrolled before).
            conn.execute(
                text(
                    "UPDATE kit SET enrolled_at = :t, credential_hash = :c, receipt_key = NULL, "
                    "slip_key = :s, revoked_at = NULL, revoked_reason = NULL WHERE kit_id = :k"
                ),
                {
                    "t": now,
                    "c": _digest(credential),
                    "s": base64.b64encode(slip_key).decode(),
                    "k": kit_id,
                },
            )
        return credential, public_bytes(self.receipt_key)

    def revoke(self, kit_id: str, reason: str) -> bool:
        """Refuse the kit from now on; tokens made before the revocation die with it."""
        now = iso(self.clock())
        with self._write() as conn, conn.begin():
            done = conn.execute(
                text(
                    "UPDATE kit SET revoked_at = :t, revoked_reason = :r "
                    "WHERE kit_id = :k AND revoked_at IS NULL"
                ),
                {"t": now, "r": reason, "k": kit_id},
            )
            conn.execute(
                text(
                    "UPDATE enrollment_token SET used_at = :t WHERE kit_id = :k AND used_at IS NULL"
                ),
                {"t": now, "k": kit_id},
            )
            revoked = done.rowcount == 1
        if revoked:
            event("revoked", kit_id=kit_id)
        return revoked

    def kits(self) -> list[Kit]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT kit_id, receipt_key, slip_key, revoked_reason, revoked_at FROM kit "
                    "WHERE enrolled_at IS NOT NULL ORDER BY kit_id"
                )
            ).all()
        return [_kit(row) for row in rows]

    def authenticate(self, authorization: str | None) -> Kit:
        scheme, _, value = (authorization or "").partition(" ")
        kit_id, sep, credential = value.strip().partition(":")
        if scheme.lower() != "bearer" or not sep or not kit_id or not credential:
            raise AuthError(
                401,
                "unauthenticated",
                "send Authorization: Bearer KIT_ID:CREDENTIAL (enrol the kit first)",
            )
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT kit_id, receipt_key, slip_key, revoked_reason, revoked_at, "
                    "credential_hash FROM kit WHERE kit_id = :k"
                ),
                {"k": kit_id},
            ).first()
        if row is None or row[5] is None or not hmac.compare_digest(row[5], _digest(credential)):
            raise AuthError(401, "unauthenticated", "unknown kit or wrong credential")
        kit = _kit(row)
        if kit.revoked_reason is not None:
            raise AuthError(
                403, "kit_revoked", f"kit {kit_id} is revoked: {kit.revoked_reason or 'no reason'}"
            )
        return kit

    # --- ingest -----------------------------------------------------------------------

    def ingest(self, kit: Kit, records: Iterable[Envelope]) -> list[RecordResult]:
        """Store each record in its own transaction; a result per record, in order."""
        results: list[RecordResult | _Prepared] = [self._prepare(kit, env) for env in records]
        prepared = [r for r in results if isinstance(r, _Prepared)]
        with self._write() as conn:
            held = self._held(conn, prepared)
            refused = self._refusals(conn, kit.kit_id, prepared)
            pending = self._withdrawn_codes(conn, kit.kit_id, prepared)
            out: list[RecordResult] = []
            cuts: list[str] = []
            for r in results:
                if isinstance(r, RecordResult):
                    out.append(r)
                    continue
                if r.visit_id is not None and r.env.record_type == "visit":
                    r = _cut(r, refused.get(r.visit_id, frozenset()))
                out.append(self._store(conn, kit, r, held, cuts, pending))
                if r.visit_id is not None and r.refused:
                    refused[r.visit_id] = refused.get(r.visit_id, frozenset()) | r.refused
            self._unbook_unshared(conn, kit.kit_id, prepared, refused, cuts)
        if cuts:
            self.checkpoint()
        return out

    def _unbook_unshared(
        self,
        conn: Connection,
        kit_id: str,
        batch: list[_Prepared],
        refused: dict[str, frozenset[str]],
        cuts: list[str],
    ) -> None:
        """C2 refused: the centre may not call, so a call-back request or booking made on
        the slip's page (perhaps before the visit arrived) is cancelled and its phone erased."""
        codes: set[str] = set()
        for r in batch:
            if r.visit_id is None or "c2" not in refused.get(r.visit_id, frozenset()):
                continue
            if r.env.record_type == "visit" and r.code is not None:
                codes.add(r.code)
            elif r.env.record_type == "consent":
                code = self._visit_code(conn, kit_id, r.visit_id)
                if code is not None:
                    codes.add(code)
        for code in sorted(codes):
            with self._writers, conn.begin():
                bookings.forget(conn, kit_id, code, iso(self.clock()))
            cuts.append(code)

    def checkpoint(self) -> None:
        """After a scrub: the SQLite WAL moved into the main file and truncated, so the
        removed bytes (zeroed there by ``secure_delete``) leave the disk."""
        if self._postgres:
            return
        with self._writers, self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def _refusals(
        self, conn: Connection, kit_id: str, batch: list[_Prepared]
    ) -> dict[str, frozenset[str]]:
        """What the latest held consent of each of the batch's visits refuses."""
        ids = sorted({r.visit_id for r in batch if r.visit_id and r.env.record_type == "visit"})
        out: dict[str, frozenset[str]] = {}
        with conn.begin():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join(f":v{i}" for i in range(len(chunk)))
                rows = conn.execute(
                    text(
                        "SELECT visit_id, body FROM record WHERE record_type = 'consent' "
                        f"AND kit_id = :k AND visit_id IN ({marks}) "
                        "ORDER BY created_at, received_at"
                    ),
                    {"k": kit_id, **{f"v{i}": v for i, v in enumerate(chunk)}},
                ).all()
                for visit_id, body_text in rows:
                    out[str(visit_id)] = _refused_items("consent", json.loads(body_text))
        return out

    def _prepare(self, kit: Kit, env: Envelope) -> RecordResult | _Prepared:
        """Everything about a record that needs no database: checks, upgrade, JSON."""
        rid = env.record_id
        if env.kit_id != kit.kit_id:
            return RecordResult(
                record_id=rid,
                status="rejected",
                reason=f"record belongs to kit {env.kit_id}; this kit is {kit.kit_id}",
            )
        try:
            computed = env.computed_hash()
        except (UnicodeError, ValueError) as exc:
            return RecordResult(record_id=rid, status="rejected", reason=f"unreadable body: {exc}")
        if computed != env.content_hash:
            return RecordResult(
                record_id=rid,
                status="rejected",
                reason=f"content hash does not match the record (server computed {computed})",
            )
        try:
            body = upgrade_body(env.record_type, env.schema_version, env.body)
        except SchemaVersionError as exc:
            return RecordResult(record_id=rid, status="rejected", reason=str(exc))
        try:
            check_body(env.record_type, env.schema_version, env.body)
        except BodyError as exc:
            return RecordResult(record_id=rid, status="rejected", reason=str(exc))
        bad = _body_problem(env.record_type, body)
        if bad:
            return RecordResult(record_id=rid, status="rejected", reason=bad)
        withdrawal = is_withdrawal(env.record_type, body)
        refused = frozenset[str]()
        if not withdrawal:
            refused = _refused_items(env.record_type, body)
            if env.schema_version > 1 and body.get("kind") == "initial":
                # A current visit body declares its own consent: only C2 is worth a look.
                refused &= {"c2"}
        code = _str_or_none(body.get("referral_code")) if env.record_type == "visit" else None
        payload = env.record()
        skeleton = {**payload, "body": scrub_body(env.body)}
        stored_payload = _stored_json(skeleton if withdrawal else payload)
        stored_body = _stored_json(scrub_body(body) if withdrawal else body)
        return _Prepared(
            env=env,
            computed=computed,
            body=body,
            visit_id=_str_or_none(body.get("visit_id")),
            code=code,
            withdrawal=withdrawal,
            refused=refused,
            params={
                "rid": rid,
                "kit": kit.kit_id,
                "rt": env.record_type,
                "sv": env.schema_version,
                "h": computed,
                "ca": env.created_at,
                "vid": _str_or_none(body.get("visit_id")),
                "vv": _int_or_none(body.get("version")),
                "code": code,
                "ck": _code_key(kit.kit_id, code) if code is not None else None,
                "p": stored_payload,
                "b": stored_body,
                "ps": _stored_json(skeleton) if not withdrawal else stored_payload,
                "bs": _stored_json(scrub_body(body)) if not withdrawal else stored_body,
                "dg": None if withdrawal else visit_facts.digest(env.record_type, body),
            },
        )

    def _held(self, conn: Connection, batch: list[_Prepared]) -> set[str]:
        """Which of the batch's records are already stored: a resend skips the insert."""
        ids = [r.env.record_id for r in batch]
        found: set[str] = set()
        with conn.begin():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join(f":r{i}" for i in range(len(chunk)))
                found.update(
                    conn.scalars(
                        text(f"SELECT record_id FROM record WHERE record_id IN ({marks})"),
                        {f"r{i}": rid for i, rid in enumerate(chunk)},
                    )
                )
        return found

    def _withdrawn_codes(self, conn: Connection, kit_id: str, batch: list[_Prepared]) -> set[str]:
        """Which of the batch's referral codes were withdrawn on the slip's page."""
        codes = sorted({r.code for r in batch if r.code is not None})
        found: set[str] = set()
        with conn.begin():
            for start in range(0, len(codes), 500):
                chunk = codes[start : start + 500]
                marks = ", ".join(f":c{i}" for i in range(len(chunk)))
                found.update(
                    conn.scalars(
                        text(
                            "SELECT referral_code FROM attendee_withdrawal WHERE kit_id = :k "
                            f"AND referral_code IN ({marks})"
                        ),
                        {"k": kit_id, **{f"c{i}": c for i, c in enumerate(chunk)}},
                    )
                )
        return found

    def _store(
        self,
        conn: Connection,
        kit: Kit,
        prep: _Prepared,
        held: set[str],
        cuts: list[str],
        pending: set[str],
    ) -> RecordResult:
        """Insert one record; ``cuts`` gains the ids of held records it scrubbed or cut;
        ``pending`` holds the batch's codes withdrawn on the slip's page."""
        rid = prep.env.record_id
        if rid in held:
            return self._existing(conn, kit, prep.env, prep.computed)
        received_at = iso(self.clock())
        if kit.receipt_key:
            receipt = sign_receipt(kit.receipt_key, rid, prep.computed, received_at)
        else:
            receipt = sign_receipt_ed25519(self.receipt_key, rid, prep.computed, received_at)
        visit_id = prep.visit_id
        params = {
            **prep.params,
            "ra": received_at,
            "sig": receipt.signature,
            "s": received_at if prep.withdrawal else None,
        }
        try:
            if (prep.withdrawal or prep.refused) and visit_id is not None:
                code = self._visit_code(conn, kit.kit_id, visit_id) if prep.withdrawal else None
                with self._writers, conn.begin():
                    if self._postgres:
                        if code is not None:  # codes before visits, as the page locks them
                            conn.exec_driver_sql(
                                self._sql["code_lock"], {"ck": _code_key(kit.kit_id, code)}
                            )
                        conn.exec_driver_sql(self._sql["visit_lock"], {"v": visit_id})
                    conn.exec_driver_sql(self._sql["insert_record"], params)
                    if prep.withdrawal:
                        self._withdraw(conn, kit.kit_id, visit_id, rid, received_at)
                        cuts.append(rid)
                        if code is not None:
                            # The kit has it now: the centre stops telling it.
                            self._acknowledge(conn, kit.kit_id, code, received_at)
                    else:
                        cuts += self._unshare(conn, kit.kit_id, visit_id, prep.refused)
            elif prep.code in pending and visit_id is not None:
                # Withdrawn on the slip's page before it arrived: scrubbed on arrival, with
                # whatever of the visit came before it.
                with self._writers, conn.begin():
                    if self._postgres:
                        conn.exec_driver_sql(self._sql["code_lock"], params)
                        conn.exec_driver_sql(self._sql["visit_lock"], {"v": visit_id})
                    conn.exec_driver_sql(self._sql["insert_record"], params)
                    self._withdraw(conn, kit.kit_id, visit_id, ATTENDEE_PAGE, received_at)
                    cuts.append(rid)
                    if self._kit_withdrew(conn, kit.kit_id, visit_id):
                        self._acknowledge(conn, kit.kit_id, prep.code, received_at)
            else:
                self._insert(conn, params, visit_id)
        except IntegrityError:
            return self._existing(conn, kit, prep.env, prep.computed)
        except DataError as exc:
            return RecordResult(
                record_id=rid, status="rejected", reason=f"the database refused a value: {exc.orig}"
            )
        return RecordResult(record_id=rid, status="accepted", reason="stored", receipt=receipt)

    def _insert(self, conn: Connection, params: dict[str, Any], visit_id: str | None) -> None:
        """One record in a transaction of its own, straight through the driver: the
        ingest's hot path, one network round trip per record on PostgreSQL."""
        raw: Any = conn.connection.dbapi_connection
        dbapi: Any = self.engine.dialect.loaded_dbapi
        statement = self._sql["insert_record"]
        try:
            if self._postgres:
                from psycopg import ClientCursor

                if visit_id is not None:
                    # Writers of one visit take turns (the lock lasts to the end of the
                    # transaction), so a withdrawal and a record of its visit arriving
                    # through two relays always see each other.
                    statement = self._sql["visit_lock"] + "; " + statement
                if params.get("code") is not None and visit_id is not None:
                    # A withdrawal on the slip's page made since the batch was checked.
                    statement = (
                        self._sql["code_lock"]
                        + "; "
                        + statement
                        + "; "
                        + self._sql["withdraw_on_arrival"]
                    )
                # Both statements in one message, run by the server as one transaction:
                # a single round trip per record.
                raw.autocommit = True
                try:
                    with ClientCursor(raw) as cursor:
                        cursor.execute(statement, {**params, "v": visit_id})
                finally:
                    raw.autocommit = False
            else:
                with self._writers:
                    cursor = raw.cursor()
                    try:
                        cursor.execute("BEGIN IMMEDIATE")
                        try:
                            cursor.execute(statement, params)
                            if params.get("code") is not None and visit_id is not None:
                                cursor.execute(self._sql["withdraw_on_arrival"], params)
                            cursor.execute("COMMIT")
                        except BaseException:
                            if raw.in_transaction:
                                cursor.execute("ROLLBACK")
                            raise
                    finally:
                        cursor.close()
        except dbapi.Error as exc:
            # The same exceptions SQLAlchemy would raise, for the callers and the app.
            raise DBAPIError.instance(
                statement, params, exc, dbapi.Error, dialect=self.engine.dialect
            ) from exc

    def _visit_code(self, conn: Connection, kit_id: str, visit_id: str) -> str | None:
        with conn.begin():
            code = conn.scalar(
                text(
                    "SELECT referral_code FROM record WHERE kit_id = :k AND visit_id = :v "
                    "AND record_type = 'visit' AND referral_code IS NOT NULL LIMIT 1"
                ),
                {"k": kit_id, "v": visit_id},
            )
        return None if code is None else str(code)

    @staticmethod
    def _kit_withdrew(conn: Connection, kit_id: str, visit_id: str) -> bool:
        """True when the kit's own withdrawal record of the visit is here."""
        found = conn.scalar(
            text(
                "SELECT 1 FROM withdrawal WHERE kit_id = :k AND visit_id = :v AND record_id <> :a"
            ),
            {"k": kit_id, "v": visit_id, "a": ATTENDEE_PAGE},
        )
        return found is not None

    @staticmethod
    def _acknowledge(conn: Connection, kit_id: str, code: str, now: str) -> None:
        conn.execute(
            text(
                "UPDATE attendee_withdrawal SET acknowledged_at = :t WHERE kit_id = :k "
                "AND referral_code = :c AND acknowledged_at IS NULL"
            ),
            {"t": now, "k": kit_id, "c": code},
        )

    # --- withdrawal on the slip's page ------------------------------------------------

    def withdraw_by_attendee(self, kit_id: str, code: str, language: str) -> AttendeeWithdrawal:
        """The holder of ``kit_id``'s signed slip for ``code`` withdraws: every record of
        that kit's visit with this code keeps only its skeleton, now or when it arrives.
        Idempotent: a repeat changes nothing and returns the first withdrawal."""
        now = iso(self.clock())
        with self._writers, self._write() as conn, conn.begin():
            if self._postgres:
                conn.exec_driver_sql(self._sql["code_lock"], {"ck": _code_key(kit_id, code)})
            conn.execute(
                text(
                    "INSERT INTO attendee_withdrawal (kit_id, referral_code, language, "
                    "withdrawn_at) SELECT :k, :c, :l, :t WHERE NOT EXISTS "
                    "(SELECT 1 FROM attendee_withdrawal WHERE kit_id = :k AND referral_code = :c)"
                ),
                {"k": kit_id, "c": code, "l": language, "t": now},
            )
            bookings.forget(conn, kit_id, code, now)
            _forget_followups(conn, kit_id, code)
            visits = list(
                conn.scalars(
                    text(
                        "SELECT DISTINCT visit_id FROM record WHERE kit_id = :k "
                        "AND record_type = 'visit' AND referral_code = :c "
                        "AND visit_id IS NOT NULL ORDER BY visit_id"
                    ),
                    {"k": kit_id, "c": code},
                )
            )
            for visit_id in visits:
                if self._postgres:
                    conn.exec_driver_sql(self._sql["visit_lock"], {"v": visit_id})
                self._withdraw(conn, kit_id, visit_id, ATTENDEE_PAGE, now)
                if self._kit_withdrew(conn, kit_id, visit_id):
                    self._acknowledge(conn, kit_id, code, now)
            found = self._attendee_withdrawal(conn, kit_id, code)
        assert found is not None
        # Erased phone numbers (bookings, call-backs) and scrubbed rows leave the WAL too.
        self.checkpoint()
        event("attendee_withdrawal", kit_id=kit_id, arrived=len(visits))
        return found

    def attendee_withdrawal(self, kit_id: str, code: str) -> AttendeeWithdrawal | None:
        with self.engine.connect() as conn:
            return self._attendee_withdrawal(conn, kit_id, code)

    @staticmethod
    def _attendee_withdrawal(conn: Connection, kit_id: str, code: str) -> AttendeeWithdrawal | None:
        row = conn.execute(
            text(
                "SELECT kit_id, referral_code, language, withdrawn_at, acknowledged_at "
                "FROM attendee_withdrawal WHERE kit_id = :k AND referral_code = :c"
            ),
            {"k": kit_id, "c": code},
        ).first()
        if row is None:
            return None
        return AttendeeWithdrawal(
            kit_id=row[0],
            referral_code=row[1],
            language=row[2],
            withdrawn_at=row[3],
            acknowledged=row[4] is not None,
        )

    def withdrawals_for(self, kit: Kit, *, limit: int = 1000) -> list[AttendeeWithdrawal]:
        """The withdrawals made on the slip's page for ``kit``'s own codes that its own
        withdrawal record has not answered yet (oldest first)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT kit_id, referral_code, language, withdrawn_at FROM "
                    "attendee_withdrawal WHERE kit_id = :k AND acknowledged_at IS NULL "
                    "ORDER BY seq LIMIT :n"
                ),
                {"k": kit.kit_id, "n": limit},
            ).all()
        return [AttendeeWithdrawal(r[0], r[1], r[2], r[3], acknowledged=False) for r in rows]

    def _existing(self, conn: Connection, kit: Kit, env: Envelope, computed: str) -> RecordResult:
        rid = env.record_id
        with conn.begin():
            row = conn.execute(
                text(
                    "SELECT content_hash, received_at, signature, kit_id FROM record "
                    "WHERE record_id = :r"
                ),
                {"r": rid},
            ).first()
        if row is None:  # pragma: no cover - only a foreign-key or similar failure
            return RecordResult(
                record_id=rid, status="rejected", reason="the record could not be stored"
            )
        if row[0] == computed and row[3] == kit.kit_id:
            return RecordResult(
                record_id=rid,
                status="already_received",
                reason="identical record already held",
                receipt=Receipt(
                    record_id=rid, content_hash=row[0], received_at=row[1], signature=row[2]
                ),
            )
        try:
            with conn.begin():
                conn.execute(
                    text(
                        "INSERT INTO conflict (record_id, kit_id, stored_hash, incoming_hash, "
                        "received_at) VALUES (:r, :k, :s, :i, :t)"
                    ),
                    {"r": rid, "k": kit.kit_id, "s": row[0], "i": computed, "t": iso(self.clock())},
                )
        except IntegrityError:
            pass  # the same conflicting content was reported before
        return RecordResult(
            record_id=rid,
            status="conflict",
            reason=(
                f"the server already holds record {rid} with different content "
                f"(hash {row[0][:12]}…); the original is kept"
            ),
        )

    def _withdraw(
        self, conn: Connection, kit_id: str, visit_id: str, record_id: str, now: str
    ) -> None:
        """Keep only the skeleton of every record of ``visit_id``; note the withdrawal."""
        # The slip's bookings and call-back requests go with it (their phone numbers too).
        for code in conn.scalars(
            text(
                "SELECT DISTINCT referral_code FROM record WHERE kit_id = :k AND visit_id = :v "
                "AND record_type = 'visit' AND referral_code IS NOT NULL"
            ),
            {"k": kit_id, "v": visit_id},
        ).all():
            bookings.forget(conn, kit_id, str(code), now)
            _forget_notes(conn, kit_id, str(code))
            _forget_followups(conn, kit_id, str(code))
        conn.execute(
            text(
                "INSERT INTO withdrawal (visit_id, kit_id, record_id, withdrawn_at) "
                "SELECT :v, :k, :r, :t WHERE NOT EXISTS "
                "(SELECT 1 FROM withdrawal WHERE kit_id = :k AND visit_id = :v)"
            ),
            {"v": visit_id, "k": kit_id, "r": record_id, "t": now},
        )
        rows = conn.execute(
            text(
                "SELECT record_id, payload, body FROM record WHERE kit_id = :k "
                "AND visit_id = :v AND record_id <> :r AND scrubbed_at IS NULL"
            ),
            {"k": kit_id, "v": visit_id, "r": record_id},
        ).all()
        for rid, payload_text, body_text in rows:
            payload = json.loads(payload_text)
            payload["body"] = scrub_body(payload.get("body", {}))
            conn.execute(
                text(
                    "UPDATE record SET payload = :p, body = :b, scrubbed_at = :t, "
                    "digest = NULL WHERE record_id = :r"
                ),
                {
                    "p": _stored_json(payload),
                    "b": _stored_json(scrub_body(json.loads(body_text))),
                    "t": now,
                    "r": rid,
                },
            )

    def _unshare(
        self, conn: Connection, kit_id: str, visit_id: str, refused: frozenset[str]
    ) -> list[str]:
        """Cut the held versions of a visit down to what its consent now allows: the
        counts shape when C2 is refused, no contact when C3 is. Returns the cut ids."""
        rows = conn.execute(
            text(
                "SELECT record_id, payload, body FROM record WHERE kit_id = :k "
                "AND visit_id = :v AND record_type = 'visit' AND scrubbed_at IS NULL"
            ),
            {"k": kit_id, "v": visit_id},
        ).all()
        done: list[str] = []
        for rid, payload_text, body_text in rows:
            body = json.loads(body_text)
            payload = json.loads(payload_text)
            recorded = str(payload.get("created_at", ""))
            cut = _cut_body(body, refused, recorded)
            if cut is body:
                continue
            done.append(rid)
            payload["body"] = _cut_body(payload.get("body", {}), refused, recorded)
            conn.execute(
                text("UPDATE record SET payload = :p, body = :b, digest = :d WHERE record_id = :r"),
                {
                    "p": _stored_json(payload),
                    "b": _stored_json(cut),
                    "d": visit_facts.digest("visit", cut),
                    "r": rid,
                },
            )
        return done

    # --- queries ----------------------------------------------------------------------

    def have(self, kit: Kit, record_ids: Iterable[str]) -> list[HaveItem]:
        # An id the envelope's pattern refuses cannot be held; some databases would also
        # refuse it as a value (PostgreSQL and NUL).
        ids = [rid for rid in dict.fromkeys(record_ids) if _RECORD_ID.fullmatch(rid)]
        out: list[HaveItem] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                params = {f"r{i}": rid for i, rid in enumerate(chunk)}
                marks = ", ".join(f":r{i}" for i in range(len(chunk)))
                rows = conn.execute(
                    text(
                        "SELECT record_id, content_hash, received_at, signature FROM record "
                        f"WHERE kit_id = :kit AND record_id IN ({marks})"
                    ),
                    {"kit": kit.kit_id, **params},
                ).all()
                for rid, chash, received, sig in rows:
                    out.append(
                        HaveItem(
                            record_id=rid,
                            content_hash=chash,
                            receipt=Receipt(
                                record_id=rid,
                                content_hash=chash,
                                received_at=received,
                                signature=sig,
                            ),
                        )
                    )
        order = {rid: i for i, rid in enumerate(ids)}
        return sorted(out, key=lambda item: order[item.record_id])

    def records(self) -> list[StoredRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT record_id, kit_id, record_type, schema_version, content_hash, "
                    "created_at, received_at, scrubbed_at FROM record "
                    "ORDER BY received_at, record_id"
                )
            ).all()
        return [
            StoredRecord(
                record_id=r[0],
                kit_id=r[1],
                record_type=r[2],
                schema_version=int(r[3]),
                content_hash=r[4],
                created_at=r[5],
                received_at=r[6],
                scrubbed=r[7] is not None,
            )
            for r in rows
        ]

    def record_body(self, record_id: str) -> dict[str, Any] | None:
        """The stored body (current schema), for checks and the coordinator."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT body FROM record WHERE record_id = :r"), {"r": record_id}
            ).first()
        return None if row is None else dict(json.loads(row[0]))

    def conflicts(self) -> list[dict[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT record_id, kit_id, stored_hash, incoming_hash, received_at "
                    "FROM conflict ORDER BY id"
                )
            ).all()
        keys = ("record_id", "kit_id", "stored_hash", "incoming_hash", "received_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def kits_with_code(self, code: str) -> list[str]:
        """Every kit that has sent a visit naming this referral code (normally one; a
        second one is either a collision or a kit reusing another's code)."""
        with self.engine.connect() as conn:
            return sorted(
                str(k)
                for k in conn.scalars(
                    text(
                        "SELECT DISTINCT kit_id FROM record WHERE record_type = 'visit' "
                        "AND referral_code = :c"
                    ),
                    {"c": code},
                )
            )

    def referral(self, code: str, kit_id: str) -> Referral | None:
        """The latest version of ``kit_id``'s visit with this referral code, if it has
        arrived. Only that kit's records count: another kit naming the same code or visit
        id never changes what its slip shows."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT visit_id, body FROM record WHERE record_type = 'visit' "
                    "AND referral_code = :c AND kit_id = :k "
                    "ORDER BY visit_version DESC, created_at DESC LIMIT 1"
                ),
                {"c": code, "k": kit_id},
            ).first()
            if row is None:
                return None
            visit_id, body_text = row
            withdrawn = (
                conn.execute(
                    text("SELECT 1 FROM withdrawal WHERE kit_id = :k AND visit_id = :v"),
                    {"k": kit_id, "v": visit_id},
                ).first()
                is not None
            )
            consents = conn.execute(
                text(
                    "SELECT body FROM record WHERE record_type = 'consent' AND kit_id = :k "
                    "AND visit_id = :v ORDER BY created_at"
                ),
                {"k": kit_id, "v": visit_id},
            ).all()
        body = json.loads(body_text)
        shared = False
        for (consent_text,) in consents:
            consent = json.loads(consent_text)
            items = consent.get("items")
            if isinstance(items, dict) and "c2" in items:
                shared = items.get("c2") is True
        outcome = body.get("outcome")
        level = outcome.get("triage") if isinstance(outcome, dict) else body.get("level")
        language = body.get("language")
        booth = body.get("booth")
        booth = booth if isinstance(booth, dict) else {}
        number, name = booth.get("emergency_number"), booth.get("name")
        return Referral(
            kit_id=kit_id,
            level=level if isinstance(level, str) else None,
            language=language if isinstance(language, str) else "",
            shared=shared and not withdrawn and body.get("sharing") != "counts",
            withdrawn=withdrawn,
            void=body.get("status") == "void",
            emergency_number=number if isinstance(number, str) and number else None,
            booth=name if isinstance(name, str) and name else None,
            has_contact=isinstance(body.get("contact"), dict) and bool(body["contact"]),
        )


_RECORD_ID = re.compile(ID_PATTERN)

# The ingest path's statements, run through the driver directly (no SQL compilation per
# record): written with :name parameters, which psycopg spells %(name)s.
_HOT_SQL = {
    "visit_lock": "SELECT pg_advisory_xact_lock(hashtext(:v))",
    "insert_record": (
        "INSERT INTO record (record_id, kit_id, record_type, schema_version, "
        "content_hash, created_at, received_at, signature, visit_id, "
        "visit_version, referral_code, payload, body, scrubbed_at, digest) "
        "SELECT :rid, :kit, :rt, :sv, :h, :ca, :ra, :sig, :vid, :vv, :code, "
        "CASE WHEN w.visit_id IS NULL AND aw.seq IS NULL THEN :p ELSE :ps END, "
        "CASE WHEN w.visit_id IS NULL AND aw.seq IS NULL THEN :b ELSE :bs END, "
        "CASE WHEN w.visit_id IS NULL AND aw.seq IS NULL THEN :s ELSE :ra END, "
        "CASE WHEN w.visit_id IS NULL AND aw.seq IS NULL THEN :dg ELSE NULL END "
        "FROM (SELECT 1 AS one) AS x LEFT JOIN withdrawal AS w "
        "ON w.kit_id = :kit AND w.visit_id = :vid "
        "LEFT JOIN attendee_withdrawal AS aw ON aw.kit_id = :kit AND aw.referral_code = :code"
    ),
    "code_lock": "SELECT pg_advisory_xact_lock(hashtext(:ck))",
    # A visit whose code was withdrawn on the slip's page: later records of it are
    # scrubbed on arrival too.
    "withdraw_on_arrival": (
        "INSERT INTO withdrawal (visit_id, kit_id, record_id, withdrawn_at) "
        "SELECT :vid, :kit, 'attendee-page', :ra FROM attendee_withdrawal "
        "WHERE kit_id = :kit AND referral_code = :code "
        "ON CONFLICT (kit_id, visit_id) DO NOTHING"
    ),
}


def _driver_sql(dialect: str) -> dict[str, str]:
    if dialect != "postgresql":
        return dict(_HOT_SQL)
    return {k: re.sub(r":(\w+)", r"%(\1)s", v) for k, v in _HOT_SQL.items()}


def _kit(row: Any) -> Kit:
    return Kit(
        kit_id=row[0],
        receipt_key=base64.b64decode(row[1]) if row[1] else b"",
        slip_key=base64.b64decode(row[2]) if row[2] else None,
        revoked_reason=(row[3] or "revoked") if row[4] is not None else None,
    )


def _stored_json(value: Any) -> str:
    # ASCII escapes keep NUL and lone surrogates storable in every database.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _str_or_none(value: Any) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        return None
    return value if value.isprintable() else None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if -(2**31) < value < 2**31 else None


def _body_problem(record_type: str, body: dict[str, Any]) -> str:
    """Why a body cannot be used, in words; empty when it can."""
    needs_visit = record_type in ("consent", "consent_withdrawal")
    visit_id = body.get("visit_id")
    if needs_visit and _str_or_none(visit_id) is None:
        return f"a {record_type} record needs body.visit_id (a string)"
    if visit_id is not None and _str_or_none(visit_id) is None:
        return "body.visit_id must be a string of at most 200 characters"
    return ""


def _refused_items(record_type: str, body: dict[str, Any]) -> frozenset[str]:
    """The sharing items (C2, C3) a consent record refuses."""
    items = body.get("items")
    if record_type != "consent" or not isinstance(items, dict):
        return frozenset()
    return frozenset(k for k in ("c2", "c3") if k in items and items[k] is not True)


def _cut_body(body: dict[str, Any], refused: frozenset[str], recorded: str) -> dict[str, Any]:
    if body.get("withdrawn"):
        return body
    if "c2" in refused and body.get("sharing") != "counts":
        return counts_from(body, recorded=recorded)
    if "c3" in refused and body.get("contact") is not None:
        return {k: v for k, v in body.items() if k != "contact"}
    return body


def _cut(prep: _Prepared, refused: frozenset[str]) -> _Prepared:
    """A visit arriving after a consent that refuses what it carries: stored cut."""
    recorded = prep.env.created_at
    cut = _cut_body(prep.body, refused, recorded)
    if cut is prep.body:
        return prep
    payload = {**prep.env.record(), "body": _cut_body(prep.env.body, refused, recorded)}
    params = {
        **prep.params,
        "p": _stored_json(payload),
        "b": _stored_json(cut),
        "dg": visit_facts.digest(prep.env.record_type, cut),
    }
    return _Prepared(
        env=prep.env,
        computed=prep.computed,
        body=cut,
        visit_id=prep.visit_id,
        code=prep.code,
        withdrawal=prep.withdrawal,
        refused=prep.refused,
        params=params,
    )


def _forget_followups(conn: Connection, kit_id: str, code: str) -> None:
    """A withdrawal removes the follow-up answers, as it removes the visit's."""
    conn.execute(
        text("DELETE FROM followup_response WHERE kit_id = :k AND referral_code = :c"),
        {"k": kit_id, "c": code},
    )


def _forget_notes(conn: Connection, kit_id: str, code: str) -> None:
    """A withdrawn referral's worklist events keep what was done and when (the service's
    own record), never the clinicians' free text, which may say anything about the person."""
    rows = conn.execute(
        text("SELECT id, data FROM referral_event WHERE kit_id = :k AND referral_code = :c"),
        {"k": kit_id, "c": code},
    ).all()
    for event_id, data_text in rows:
        data = json.loads(data_text)
        if data.get("note"):
            data["note"] = ""
            conn.execute(
                text("UPDATE referral_event SET data = :d WHERE id = :i"),
                {"d": _stored_json(data), "i": event_id},
            )

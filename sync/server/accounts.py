"""The centre's accounts: clinicians and coordinators, their sessions, sign-in limits and
the access audit.

Passwords are kept as Argon2id hashes. Sessions live in the database (so every worker
sees the same ones) under a hash of their id; each carries its own CSRF token. Failed
sign-ins are counted in the database per account and per address, so a limit holds
across workers and restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sync.server.events import event
from sync.server.store import ServerStore, iso

ROLES = ("clinician", "coordinator")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Only the test suite sets this: cheap hashes, so that each test does not pay for Argon2id.
_TEST_KDF = "POPUP_KIT_TEST_CHEAP_KDF"


def _hasher() -> PasswordHasher:
    if os.environ.get(_TEST_KDF) == "1":
        return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    return PasswordHasher()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def name_problem(name: str) -> str:
    """Why ``name`` cannot name an account ('' when it can)."""
    if _NAME.fullmatch(name):
        return ""
    return (
        f"{name[:40]!r} is not a valid user name: 1 to 64 letters, digits, '.', '_', '@' "
        "or '-', starting with a letter or digit"
    )


# PostgreSQL: sign-in attempts are counted and recorded one transaction at a time.
_SIGNIN_LOCK = 84700011
# Expired attempts removed per sign-in: enough to keep up, never a long delete.
PRUNE_PER_SIGNIN = 50


@dataclass(frozen=True)
class Policy:
    """How long a session may sit idle, and how many failed sign-ins are allowed."""

    idle: timedelta = timedelta(minutes=30)
    failures_per_account: int = 5
    failures_per_address: int = 20
    lockout: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: str
    disabled: bool


@dataclass(frozen=True)
class Session:
    """A browser's session: ``sid`` is the cookie's value (never stored); ``user`` is None
    before sign-in (the sign-in form still needs a CSRF token)."""

    sid: str
    csrf: str
    user: User | None


class SignInRefused(Exception):
    """Wrong name or password, a disabled account, or too many attempts."""


@dataclass(frozen=True)
class AuditEntry:
    at: str
    user_name: str
    role: str
    action: str
    kit_id: str | None
    referral_code: str | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "user": self.user_name,
            "role": self.role,
            "action": self.action,
            "kit_id": self.kit_id,
            "referral_code": self.referral_code,
            "detail": self.detail,
        }


class Accounts:
    def __init__(self, store: ServerStore, policy: Policy | None = None) -> None:
        self.store = store
        self.policy = policy or Policy()
        self._hasher = _hasher()
        # Checked against when the name is unknown, so a wrong name costs as long as a
        # wrong password and the timing tells nothing.
        self._dummy = self._hasher.hash(secrets.token_hex(16))

    def _now(self) -> datetime:
        return self.store.clock()

    def _write(self) -> Connection:
        return self.store.engine.connect().execution_options(sqlite_immediate=True)

    # --- accounts ---------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str) -> User:
        problem = name_problem(name)
        if problem:
            raise ValueError(problem)
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 12:
            raise ValueError("the password needs at least 12 characters")
        now = iso(self._now())
        try:
            with self._write() as conn, conn.begin():
                conn.execute(
                    text(
                        "INSERT INTO staff_user (name, role, password_hash, created_at) "
                        "VALUES (:n, :r, :h, :t)"
                    ),
                    {"n": name, "r": role, "h": self._hasher.hash(password), "t": now},
                )
        except IntegrityError as exc:
            raise ValueError(f"user {name} already exists") from exc
        event("user_added", role=role)
        return User(name, role, now, False)

    def disable_user(self, name: str) -> bool:
        """Refuse the account from now on and end its sessions."""
        with self._write() as conn, conn.begin():
            done = conn.execute(
                text(
                    "UPDATE staff_user SET disabled_at = :t WHERE name = :n AND disabled_at IS NULL"
                ),
                {"t": iso(self._now()), "n": name},
            )
            conn.execute(text("DELETE FROM staff_session WHERE user_name = :n"), {"n": name})
        return done.rowcount == 1

    def users(self) -> list[User]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT name, role, created_at, disabled_at FROM staff_user ORDER BY name")
            ).all()
        return [User(r[0], r[1], r[2], r[3] is not None) for r in rows]

    # --- sessions ---------------------------------------------------------------------

    def anonymous_session(self) -> Session:
        """A session with no one signed in: it holds the sign-in form's CSRF token. Anyone
        can ask for one, so every session already past its idle time is removed here."""
        cut = iso(self._now() - self.policy.idle)
        with self._write() as conn, conn.begin():
            conn.execute(text("DELETE FROM staff_session WHERE last_seen_at < :c"), {"c": cut})
            return self._new_session(None, conn)

    def _new_session(self, user: User | None, conn: Connection | None = None) -> Session:
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = iso(self._now())
        params = {"h": _digest(sid), "u": user.name if user else None, "c": csrf, "t": now}
        statement = text(
            "INSERT INTO staff_session (id_hash, user_name, csrf_token, created_at, "
            "last_seen_at) VALUES (:h, :u, :c, :t, :t)"
        )
        if conn is not None:
            conn.execute(statement, params)
        else:
            with self._write() as own, own.begin():
                own.execute(statement, params)
        return Session(sid, csrf, user)

    def session(self, sid: str | None, *, touch: bool = True) -> Session | None:
        """The live session with this id, its idle time restarted (unless ``touch`` is
        False: a page's own background refresh is not someone at the screen); None when it
        is unknown, idle for too long, or its account is disabled."""
        if not sid or len(sid) > 100:
            return None
        now = self._now()
        with self._write() as conn, conn.begin():
            row = conn.execute(
                text(
                    "SELECT s.csrf_token, s.last_seen_at, s.user_name, u.role, u.created_at, "
                    "u.disabled_at FROM staff_session AS s LEFT JOIN staff_user AS u "
                    "ON u.name = s.user_name WHERE s.id_hash = :h"
                ),
                {"h": _digest(sid)},
            ).first()
            if row is None:
                return None
            csrf, seen, user_name, role, created, disabled = row
            idle = now - datetime.fromisoformat(seen.replace("Z", "+00:00"))
            if idle > self.policy.idle or (user_name is not None and disabled is not None):
                conn.execute(
                    text("DELETE FROM staff_session WHERE id_hash = :h"), {"h": _digest(sid)}
                )
                return None
            if touch:
                conn.execute(
                    text("UPDATE staff_session SET last_seen_at = :t WHERE id_hash = :h"),
                    {"t": iso(now), "h": _digest(sid)},
                )
        user = None if user_name is None else User(user_name, role, created, False)
        return Session(sid, csrf, user)

    def end_session(self, sid: str) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(text("DELETE FROM staff_session WHERE id_hash = :h"), {"h": _digest(sid)})

    def sign_in(self, name: str, password: str, address: str, previous: str | None) -> Session:
        """A new session for ``name`` (a fresh id: the one from before sign-in is ended, so
        no one can plant a session id and wait). Refused past the attempt limits."""
        now = self._now()
        name = name[:64]
        attempt = self._reserve_attempt(name, address, now)
        if attempt is None:
            minutes = round(self.policy.lockout / timedelta(minutes=1))
            event("signin_refused", reason="attempt_limit")
            raise SignInRefused(
                f"too many failed sign-ins; wait {minutes} minutes or ask a coordinator"
            )
        with self.store.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT role, created_at, disabled_at, password_hash FROM staff_user "
                    "WHERE name = :n"
                ),
                {"n": name},
            ).first()
        ok = self._verify(row[3] if row is not None else None, password)
        ok = ok and row is not None and row[2] is None
        session = None
        if ok:
            assert row is not None
            with self._write() as conn, conn.begin():
                conn.execute(text("UPDATE signin_attempt SET ok = 1 WHERE id = :i"), {"i": attempt})
                if previous:
                    conn.execute(
                        text("DELETE FROM staff_session WHERE id_hash = :h"),
                        {"h": _digest(previous)},
                    )
                session = self._new_session(User(name, row[0], row[1], False), conn)
        if session is None:
            event("signin_refused", reason="credentials")
            raise SignInRefused("wrong name or password, or the account is disabled")
        self.audit(session.user, "sign_in", None, None, "")
        return session

    def _reserve_attempt(self, name: str, address: str, now: datetime) -> int | None:
        """Count the failures and record this attempt (as failed until the password is
        checked) in one transaction, one sign-in at a time: two attempts at the limit
        cannot both pass. Attempts older than the lockout window go, a bounded few each
        time. None: over a limit."""
        since = iso(now - self.policy.lockout)
        with self._write() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SIGNIN_LOCK})
            conn.execute(
                text(
                    "DELETE FROM signin_attempt WHERE id IN (SELECT id FROM signin_attempt "
                    "WHERE at <= :s ORDER BY id LIMIT :m)"
                ),
                {"s": since, "m": PRUNE_PER_SIGNIN},
            )
            by_account = conn.execute(
                text(
                    "SELECT COUNT(*) FROM signin_attempt WHERE user_name = :n AND ok = 0 "
                    "AND at > :s AND at > COALESCE((SELECT MAX(at) FROM signin_attempt "
                    "WHERE user_name = :n AND ok = 1), '')"
                ),
                {"n": name, "s": since},
            ).scalar_one()
            by_address = conn.execute(
                text(
                    "SELECT COUNT(*) FROM signin_attempt WHERE address = :a AND ok = 0 AND at > :s"
                ),
                {"a": address, "s": since},
            ).scalar_one()
            if by_account >= self.policy.failures_per_account or (
                by_address >= self.policy.failures_per_address
            ):
                return None
            return int(
                conn.execute(
                    text(
                        "INSERT INTO signin_attempt (at, user_name, address, ok) "
                        "VALUES (:t, :n, :a, 0) RETURNING id"
                    ),
                    {"t": iso(now), "n": name, "a": address},
                ).scalar_one()
            )

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    # --- the access audit ---------------------------------------------------------------

    def audit(
        self,
        user: User | None,
        action: str,
        kit_id: str | None,
        code: str | None,
        detail: str | dict[str, Any],
    ) -> None:
        if user is None:
            return
        shown = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
        with self._write() as conn, conn.begin():
            conn.execute(
                text(
                    "INSERT INTO access_audit (at, user_name, role, action, kit_id, "
                    "referral_code, detail) VALUES (:t, :u, :r, :a, :k, :c, :d)"
                ),
                {
                    "t": iso(self._now()),
                    "u": user.name,
                    "r": user.role,
                    "a": action,
                    "k": kit_id,
                    "c": code,
                    "d": shown,
                },
            )

    def audit_entries(self, limit: int | None = None) -> list[AuditEntry]:
        """The audit, newest first."""
        sql = (
            "SELECT at, user_name, role, action, kit_id, referral_code, detail "
            "FROM access_audit ORDER BY id DESC"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.store.engine.connect() as conn:
            rows = conn.execute(text(sql)).all()
        return [AuditEntry(*row) for row in rows]


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())

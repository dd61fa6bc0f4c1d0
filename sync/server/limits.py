"""Request limits: the body size cap, and the attendee pages' token buckets.

Two limits guard the referral pages:

* per network: an allowance per client address (an IPv6 client by its /64, since one
  host may hold a whole prefix). It is sized so that a market Wi-Fi with 50 attendees
  behind one NAT address, each scanning a slip and reloading it a few times, stays well
  inside it, while a scanner sending requests without pause is held to a trickle;
* per code: attempts at a code's signature. Each wrong signature costs the code one
  token; once they are spent, that code answers 429 to everyone (a right signature
  included, so a guesser learns nothing) until they refill. Other codes are untouched.
  The check comes before the signature and the charge after it, so requests for one code
  in flight at the same moment may each get one guess past the limit: a handful at most.

With one server process the buckets live in memory. With several (PostgreSQL) they live
in the ``rate_limit`` table, updated by one atomic statement, so every worker draws from
the same bucket. Keys are stored as hashes: neither addresses nor codes are kept.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Engine, text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync.server.errors import error

MAX_BODY_BYTES = 8 * 1024 * 1024


class Buckets(Protocol):
    """Token buckets by key: ``capacity`` tokens, refilled evenly over ``period`` seconds."""

    capacity: float
    rate: float

    def take(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; False (and nothing spent) when it is empty."""

    def peek(self, key: str) -> bool:
        """True when ``key``'s bucket holds a token (nothing is spent)."""

    def retry_after(self) -> int:
        """Seconds until an empty bucket holds a token again (for ``Retry-After``)."""


class TokenBuckets:
    """Buckets in this process's memory (one server process)."""

    def __init__(
        self,
        capacity: int,
        period: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / period
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        return min(self.capacity, tokens + max(0.0, now - last) * self.rate)

    def take(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            tokens = self._level(key, now)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return allowed

    def peek(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            if key not in self._buckets:
                return True
            tokens = self._level(key, now)
            self._buckets[key] = (tokens, now)
            return tokens >= 1.0

    def retry_after(self) -> int:
        return max(1, math.ceil(1.0 / self.rate))


def _level_sql(table: str) -> str:
    """The bucket's tokens now: what it held plus the refill since, at most the capacity."""
    return (
        f"(CASE WHEN {table}.tokens + (CASE WHEN :now > {table}.updated "
        f"THEN :now - {table}.updated ELSE 0 END) * :rate > :cap THEN :cap "
        f"ELSE {table}.tokens + (CASE WHEN :now > {table}.updated "
        f"THEN :now - {table}.updated ELSE 0 END) * :rate END)"
    )


_TAKE = text(
    "INSERT INTO rate_limit (scope, key, tokens, updated) "
    "VALUES (:scope, :key, CAST(:cap AS DOUBLE PRECISION) - 1, CAST(:now AS DOUBLE PRECISION)) "
    "ON CONFLICT (scope, key) DO UPDATE SET "
    f"tokens = {_level_sql('rate_limit')} - 1, "
    "updated = CASE WHEN :now > rate_limit.updated THEN :now ELSE rate_limit.updated END "
    f"WHERE {_level_sql('rate_limit')} >= 1 "
    "RETURNING tokens"
)
_PEEK = text(
    f"SELECT {_level_sql('rate_limit')} FROM rate_limit WHERE scope = :scope AND key = :key"
)
_PRUNE = text("DELETE FROM rate_limit WHERE scope = :scope AND updated < :cutoff")


class DatabaseBuckets:
    """Buckets in the ``rate_limit`` table, shared by every server process on the database.

    One ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` both refills and spends, under the
    row's lock, so two workers can never spend the same token. ``clock`` must read the
    same time in every process: wall-clock seconds by default.
    """

    PRUNE_EVERY = 1000  # takes between sweeps of full (forgettable) buckets

    def __init__(
        self,
        engine: Engine,
        scope: str,
        capacity: int,
        period: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.scope = scope
        self.capacity = float(capacity)
        self.period = float(period)
        self.rate = capacity / period
        self.clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._takes = 0
        self._lock = threading.Lock()

    def _params(self, key: str, now: float) -> dict[str, object]:
        return {
            "scope": self.scope,
            "key": _hashed(key),
            "now": now,
            "rate": self.rate,
            "cap": self.capacity,
        }

    def take(self, key: str) -> bool:
        now = float(self.clock())
        with self.engine.begin() as conn:
            if self._postgres:
                # A bucket is no record: losing its last updates to a crash is harmless, so
                # a page view does not wait for the write-ahead log to reach the disk.
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            allowed = conn.execute(_TAKE, self._params(key, now)).first() is not None
        self._maybe_prune(now)
        return allowed

    def peek(self, key: str) -> bool:
        with self.engine.connect() as conn:
            level = conn.execute(_PEEK, self._params(key, float(self.clock()))).scalar()
        return level is None or float(level) >= 1.0

    def retry_after(self) -> int:
        return max(1, math.ceil(1.0 / self.rate))

    def _maybe_prune(self, now: float) -> None:
        with self._lock:
            self._takes += 1
            if self._takes % self.PRUNE_EVERY:
                return
        # A bucket untouched for a whole period is full again: the same as no row.
        with self.engine.begin() as conn:
            conn.execute(_PRUNE, {"scope": self.scope, "cutoff": now - self.period})


def _hashed(key: str) -> str:
    return hashlib.sha256(b"popup-kit/rate-limit:" + key.encode("utf-8")).hexdigest()[:32]


def network_key(host: str) -> str:
    """The client's network as the allowance counts it: the address, an IPv6 one by /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"host:{host}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip:{address.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"ip:{address}"


class LandingLimits:
    """The referral pages' two limits: per network and per code's signature attempts."""

    def __init__(self, network: Buckets, code: Buckets) -> None:
        self.network = network
        self.code = code


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, before they are parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error(413, "too_large", f"request body over {self.limit} bytes")(
                    scope, receive, send
                )
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await error(413, "too_large", f"request body over {self.limit} bytes")(
                scope, receive, send
            )


class _TooLarge(Exception):
    pass

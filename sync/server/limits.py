"""Request limits: the body intake (encoding, size, credential first), and the attendee
pages' token buckets.

Two limits guard the referral pages:

* per network: an allowance per client address (an IPv6 client by its /64, since one
  host may hold a whole prefix). It is sized so that a market Wi-Fi with 50 attendees
  behind one NAT address, each scanning a slip and reloading it a few times, stays well
  inside it, while a scanner sending requests without pause is held to a trickle;
* per code: attempts at a code's signature. Each wrong signature costs the code one
  token; once they are spent, wrong signatures for that code answer 429 until they
  refill. The right signature always opens its page, so that someone who reads a code
  off another person's slip cannot lock them out. Other codes are untouched.

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
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync.server.errors import error
from sync.server.events import event
from sync.server.store import AuthError

MAX_BODY_BYTES = 8 * 1024 * 1024
"""The most a request body may be, on the wire and once inflated."""
_GZIP = 16 + zlib.MAX_WBITS


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


class BodyIntake:
    """Every request body, before the app sees it.

    In order, reading nothing until the last step: an unknown ``Content-Encoding`` gets
    415; a declared length over ``limit`` gets 413; on the ``guarded`` routes the
    credential is checked (``authenticate`` raises :class:`AuthError`), so a stranger's
    upload is refused unread. Then the body is read, at most ``limit`` bytes on the wire,
    and a gzip body is inflated to at most ``limit`` bytes (413 beyond, 400 if damaged).
    The app gets the plain body.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        authenticate: Callable[[str | None], object],
        guarded: dict[str, BaseRoute],
    ) -> None:
        self.app = app
        self.limit = limit
        self.authenticate = authenticate
        self.guarded = guarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-encoding"]
        codings = [
            part.strip().lower()
            for name, value in scope.get("headers", [])
            if name == b"content-encoding"
            for part in value.split(b",")
        ]
        codings = [c for c in codings if c and c != b"identity"]
        if codings not in ([], [b"gzip"], [b"x-gzip"]):
            await _refuse(415, "unsupported_encoding", "send the body plain or as gzip")(
                scope, receive, send
            )
            return
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _too_large(self.limit)(scope, receive, send)
                return
        route = self.guarded.get(scope.get("path", ""))
        if route is not None and scope.get("method") == "POST":
            authorization = next(
                (v.decode("latin-1") for k, v in headers if k == b"authorization"), None
            )
            try:
                await run_in_threadpool(self.authenticate, authorization)
            except AuthError as exc:
                # The router never saw this request; the access log still names the route.
                scope["route"] = route
                await _refused(exc, route)(scope, receive, send)
                return
        try:
            body, gone = await self._read(receive, gzipped=bool(codings))
        except TooLarge:
            await _too_large(self.limit)(scope, receive, send)
            return
        except BadEncoding as exc:
            await _refuse(400, "bad_encoding", str(exc))(scope, receive, send)
            return
        if gone is not None:  # the client left before the body ended
            return
        if codings:
            headers = [(k, v) for k, v in headers if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            scope = {**scope, "headers": headers}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, *, gzipped: bool) -> tuple[bytes, Message | None]:
        """The whole body (inflated), or the disconnect message that cut it short."""
        wire = 0
        inflater = Inflater(self.limit) if gzipped else None
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"", message
            chunk = message.get("body", b"")
            wire += len(chunk)
            if wire > self.limit:
                raise TooLarge
            if inflater is not None:
                inflater.feed(chunk)
            else:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return (inflater.finish() if inflater is not None else b"".join(chunks)), None


class Inflater:
    """Gzip decompression that stops once the output passes ``limit`` bytes, so a small
    body that inflates to gigabytes costs at most ``limit`` bytes of memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out = bytearray()
        self._d = zlib.decompressobj(wbits=_GZIP)

    def feed(self, data: bytes) -> None:
        """Inflate ``data``; raises :class:`TooLarge` or :class:`BadEncoding`."""
        try:
            while data:
                room = self.limit - len(self.out)
                self.out += self._d.decompress(data, room + 1)
                if len(self.out) > self.limit:
                    raise TooLarge
                if self._d.eof:
                    # Concatenated gzip members are one stream (RFC 1952).
                    data = self._d.unused_data
                    if data:
                        self._d = zlib.decompressobj(wbits=_GZIP)
                else:
                    data = self._d.unconsumed_tail
        except zlib.error as exc:
            raise BadEncoding("the body is not valid gzip") from exc

    def finish(self) -> bytes:
        if not self._d.eof:
            raise BadEncoding("the gzip body ends before its end marker")
        return bytes(self.out)


class ApiGzip:
    """Compressed answers for the API (receipts for a whole batch), for clients that
    accept gzip. Attendee pages stay uncompressed: they reflect the slip's signature,
    and compression beside reflected input is what BREACH-style guessing needs."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.prefix = prefix
        self.gzip = GZipMiddleware(app, minimum_size=1000)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(self.prefix):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class TooLarge(Exception):
    pass


class BadEncoding(Exception):
    pass


def _refuse(status: int, code: str, detail: str) -> ASGIApp:
    event("refused", status=status, error=code)
    return error(status, code, detail)


def _too_large(limit: int) -> ASGIApp:
    return _refuse(413, "too_large", f"request body over {limit} bytes")


def _refused(exc: AuthError, route: BaseRoute) -> ASGIApp:
    event("refused", route=getattr(route, "path", "?"), status=exc.status, error=exc.error)
    extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return error(exc.status, exc.error, exc.detail, **extra)

"""Request limits: the body intake (encoding, size, credential first) and per-client
token buckets."""

from __future__ import annotations

import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable

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


class TokenBuckets:
    """Per-client token buckets: ``capacity`` requests, refilled over ``period`` seconds."""

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

    def take(self, client: str) -> bool:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return allowed


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

"""The central triage server: FastAPI application.

Every response carries the protocol header, and every JSON body the protocol marker,
errors included, so a kit can tell this server from a captive portal.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync import protocol as p
from sync.server import landing
from sync.server.codes import CodeRules, check_code, default_rules, signature_valid
from sync.server.store import AuthError, Clock, ServerStore

MAX_BODY_BYTES = 8 * 1024 * 1024
_HEADERS = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}


def _error(status: int, error: str, detail: str = "", **extra: str) -> JSONResponse:
    body = p.ErrorResponse(error=error, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers={**_HEADERS, **extra})


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
                await _error(413, "too_large", f"request body over {self.limit} bytes")(
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
            await _error(413, "too_large", f"request body over {self.limit} bytes")(
                scope, receive, send
            )


class _TooLarge(Exception):
    pass


def create_app(
    db_url: str,
    *,
    clock: Clock | None = None,
    landing_rate: tuple[int, float] = (20, 60.0),
    rate_clock: Callable[[], float] = time.monotonic,
    emergency_number: str = "999",
    code_rules: CodeRules | None = None,
) -> FastAPI:
    """The server on the database at ``db_url`` (SQLite file URL or PostgreSQL URL).

    ``landing_rate`` is (look-ups, seconds) per client for the referral pages.
    """
    store = ServerStore(db_url, clock=clock)
    rules = code_rules or default_rules()
    buckets = TokenBuckets(landing_rate[0], landing_rate[1], clock=rate_clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="popup-kit triage server",
        version=str(p.PROTOCOL_VERSION),
        description="Receives records from popup-kit booths; serves referral landing pages.",
        lifespan=lifespan,
    )
    app.state.store = store

    @app.middleware("http")
    async def protocol_header(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers[p.PROTOCOL_HEADER] = str(p.PROTOCOL_VERSION)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_r: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error(404, "not_found", "no such endpoint")
        extra = dict(exc.headers or {})
        if exc.status_code == 405:
            return _error(405, "method_not_allowed", str(exc.detail), **extra)
        return _error(exc.status_code, "http_error", str(exc.detail), **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(part) for part in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(AuthError)
    async def refused(_r: Request, exc: AuthError) -> Response:
        extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return _error(exc.status, exc.error, exc.detail, **extra)

    @app.exception_handler(OperationalError)
    async def unavailable(_r: Request, exc: OperationalError) -> Response:
        return _error(
            503, "unavailable", "the database is busy or down; retry later", **{"Retry-After": "5"}
        )

    @app.exception_handler(DBAPIError)
    async def db_error(_r: Request, exc: DBAPIError) -> Response:
        return _error(
            503,
            "unavailable",
            "the database refused the request; retry later",
            **{"Retry-After": "5"},
        )

    responses: dict[int | str, dict[str, Any]] = {
        400: {"model": p.ErrorResponse},
        401: {"model": p.ErrorResponse},
        403: {"model": p.ErrorResponse},
        413: {"model": p.ErrorResponse},
        422: {"model": p.ErrorResponse},
    }

    @app.get(f"{p.API_PREFIX}/health", response_model=p.HealthResponse)
    def health() -> p.HealthResponse:
        return p.HealthResponse(schema_versions=list(range(1, p.CURRENT_SCHEMA_VERSION + 1)))

    @app.post(f"{p.API_PREFIX}/enroll", response_model=p.EnrollResponse, responses=responses)
    def enroll(request: p.EnrollRequest) -> p.EnrollResponse:
        try:
            slip_key = base64.b64decode(request.slip_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AuthError(422, "invalid_request", "slip_key must be base64") from exc
        if len(slip_key) < 16:
            raise AuthError(422, "invalid_request", "slip_key must be at least 16 bytes")
        credential, receipt_key = store.enroll(request.token, request.kit_id, slip_key)
        return p.EnrollResponse(
            kit_id=request.kit_id,
            credential=credential,
            receipt_key=base64.b64encode(receipt_key).decode("ascii"),
        )

    @app.post(f"{p.API_PREFIX}/ingest", response_model=p.IngestResponse, responses=responses)
    def ingest(
        request: p.IngestRequest, authorization: str | None = Header(default=None)
    ) -> p.IngestResponse:
        kit = store.authenticate(authorization)
        if request.kit_id != kit.kit_id:
            raise AuthError(
                403, "wrong_kit", f"this credential is for kit {kit.kit_id}, not {request.kit_id}"
            )
        return p.IngestResponse(results=store.ingest(kit, request.records))

    @app.post(f"{p.API_PREFIX}/have", response_model=p.HaveResponse, responses=responses)
    def have(
        request: p.HaveRequest, authorization: str | None = Header(default=None)
    ) -> p.HaveResponse:
        kit = store.authenticate(authorization)
        return p.HaveResponse(have=store.have(kit, request.record_ids))

    @app.get(
        "/r/{code}",
        response_class=HTMLResponse,
        responses={
            404: {"description": "Not a valid code or signature (HTML page)"},
            429: {"description": "Too many look-ups from this client (HTML page)"},
        },
    )
    def referral(
        request: Request,
        code: str,
        s: str | None = Query(default=None, max_length=64),
        lang: str | None = Query(default=None, max_length=8),
    ) -> HTMLResponse:
        client = request.client.host if request.client else "unknown"
        if not buckets.take(client):
            page = landing.too_many()
            return HTMLResponse(page.html, page.status, headers={"Retry-After": "60"})
        page = _landing(store, rules, code, s, lang, emergency_number)
        return HTMLResponse(
            page.html,
            page.status,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app


def _landing(
    store: ServerStore,
    rules: CodeRules,
    raw_code: str,
    sig: str | None,
    lang: str | None,
    emergency_number: str,
) -> landing.Page:
    code = check_code(rules, raw_code)
    if code is None:
        return landing.not_found()
    kits = {k.kit_id: k for k in store.kits()}
    holders = store.kits_with_code(code)
    if sig is not None:
        # The slip belongs to the kit whose key signed it; only that kit's records count.
        owners = [
            k.kit_id
            for k in kits.values()
            if k.slip_key
            and (k.revoked_reason is None or k.kit_id in holders)
            and signature_valid(rules, code, sig, k.slip_key)
        ]
        if not owners:
            return landing.not_found()
        owner = owners[0]
    elif len(holders) == 1:
        owner = holders[0]
    else:
        return landing.not_found()
    found = store.referral(code, owner)
    if found is not None:
        language = found.language
        if found.void or found.withdrawn or not found.shared or found.level is None:
            return landing.not_shared(code, language)
        return landing.next_steps(code, found.level, language, emergency_number)
    if sig is None:
        return landing.not_found()
    return landing.pending(code, lang if lang in ("en", "es") else "en")

"""The central triage server: the FastAPI application, assembled from its routers.

Every response carries the protocol header, so a kit can tell this server from a
captive portal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from sync import protocol as p
from sync.server import errors, keys, reminders
from sync.server.bookings import Bookings
from sync.server.codes import CodeRules, default_rules
from sync.server.deps import kit_auth
from sync.server.events import AccessLog
from sync.server.headers import SecurityHeaders
from sync.server.limits import (
    MAX_BODY_BYTES,
    ApiGzip,
    BodyIntake,
    Buckets,
    DatabaseBuckets,
    LandingLimits,
    TokenBuckets,
)
from sync.server.routers import api, attendee, booking, chase, clinic, docs, withdraw
from sync.server.settings import ServerSettings, key_path, load_settings
from sync.server.store import Clock, ServerStore

__all__ = ["MAX_BODY_BYTES", "TokenBuckets", "build_app", "create_app", "from_environment"]


def build_app(
    settings: ServerSettings,
    *,
    clock: Clock | None = None,
    rate_clock: Callable[[], float] | None = None,
    code_rules: CodeRules | None = None,
) -> FastAPI:
    """The server as ``settings`` describe it; ``clock``, ``rate_clock`` and ``code_rules``
    replace the real ones (tests)."""
    receipt_key = keys.load_or_create(key_path(settings))
    store = ServerStore(
        settings.database_url,
        clock=clock,
        token_hours=settings.enrolment_token_hours,
        receipt_key=receipt_key,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = reminders.start(store, settings)
        yield
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        store.close()

    app = FastAPI(
        title="popup-kit triage server",
        version=str(p.PROTOCOL_VERSION),
        description="Receives records from popup-kit booths; serves referral landing pages.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.code_rules = code_rules or default_rules()
    app.state.landing_limits = landing_limits(settings, store, rate_clock)
    app.state.bookings = Bookings(
        store.engine, clock=store.clock, hold_minutes=settings.booking_hold_minutes
    )

    @app.middleware("http")
    async def protocol_header(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers[p.PROTOCOL_HEADER] = str(p.PROTOCOL_VERSION)
        return response

    errors.install(app)
    routers = [
        api.router,
        attendee.router,
        withdraw.router,
        booking.router,
        *([docs.router] if settings.docs else []),
    ]
    for router in routers:
        app.include_router(router)
    clinic.install(app)
    app.include_router(chase.router)
    app.add_middleware(ApiGzip, prefix=p.API_PREFIX)
    app.add_middleware(
        BodyIntake,
        limit=MAX_BODY_BYTES,
        authenticate=store.authenticate,
        guarded={
            r.path: r
            for router in routers
            for r in router.routes
            if isinstance(r, APIRoute) and _needs_kit(r)
        },
    )
    app.add_middleware(AccessLog)
    app.add_middleware(SecurityHeaders, hsts=settings.public_url.startswith("https://"))
    if settings.trusted_proxies:
        # Outermost: the client address is settled before anything else reads it. Only
        # the configured proxies' X-Forwarded-For/-Proto are believed.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


def landing_limits(
    settings: ServerSettings, store: ServerStore, clock: Callable[[], float] | None = None
) -> LandingLimits:
    """The attendee pages' limits: in the database on PostgreSQL, where several workers
    share them; in memory on SQLite, which runs one worker only (``server run`` refuses
    more), so the buckets are already shared and page views cost no write to the file."""

    def buckets(scope: str, count: int, period: float) -> Buckets:
        if store.engine.dialect.name == "postgresql":
            return DatabaseBuckets(store.engine, scope, count, period, clock=clock or time.time)
        return TokenBuckets(count, period, clock=clock or time.monotonic)

    return LandingLimits(
        network=buckets("network", settings.landing_rate_count, settings.landing_rate_period),
        code=buckets("code", settings.code_attempts_count, settings.code_attempts_period),
    )


def _needs_kit(route: APIRoute) -> bool:
    """Whether the route asks for the authenticated kit, at any depth of its dependencies."""
    stack: list[Dependant] = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call is kit_auth:
            return True
        stack.extend(dependant.dependencies)
    return False


def from_environment() -> FastAPI:
    """The app from the server.toml named by ``POPUP_KIT_SERVER_CONFIG`` (each worker)."""
    return build_app(load_settings())


def create_app(
    db_url: str,
    *,
    clock: Clock | None = None,
    landing_rate: tuple[int, float] = (240, 1200.0),
    code_attempts: tuple[int, float] = (10, 3600.0),
    rate_clock: Callable[[], float] | None = None,
    emergency_number: str = "999",
    code_rules: CodeRules | None = None,
    trusted_proxies: list[str] | None = None,
    public_url: str = "",
    docs: bool = True,
    key_file: str = "",
    clinic_timezone: str = "Europe/London",
    booking_hold_minutes: float = 10.0,
) -> FastAPI:
    """The server on the database at ``db_url`` (SQLite file URL or PostgreSQL URL).

    ``landing_rate`` is (look-ups, seconds) per network for the referral pages, and
    ``code_attempts`` (wrong signatures, seconds) per code.
    """
    settings = ServerSettings(
        database_url=db_url,
        trusted_proxies=trusted_proxies or [],
        public_url=public_url,
        docs=docs,
        key_file=key_file,
        emergency_number=emergency_number,
        landing_rate_count=landing_rate[0],
        landing_rate_period=landing_rate[1],
        code_attempts_count=code_attempts[0],
        code_attempts_period=code_attempts[1],
        clinic_timezone=clinic_timezone,
        booking_hold_minutes=booking_hold_minutes,
    )
    return build_app(settings, clock=clock, rate_clock=rate_clock, code_rules=code_rules)

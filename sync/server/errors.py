"""Protocol-marked error bodies and the app's exception handlers.

Every JSON body carries the protocol marker, errors included, so a kit can tell this
server from a captive portal.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sync import protocol as p
from sync.server import landing
from sync.server.events import event
from sync.server.store import AuthError

HEADERS = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}


def error(status: int, error: str, detail: str = "", **extra: str) -> JSONResponse:
    body = p.ErrorResponse(error=error, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers={**HEADERS, **extra})


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and request.url.path.startswith("/r/"):
            # An attendee who typed a wrong address still gets the page in their language,
            # with the warning and the emergency number.
            page = landing.not_found(
                landing.page_language(request.query_params.get("l")),
                request.app.state.settings.emergency_number,
            )
            return HTMLResponse(page.html, page.status)
        if exc.status_code == 404:
            return error(404, "not_found", "no such endpoint")
        extra = dict(exc.headers or {})
        if exc.status_code == 405:
            return error(405, "method_not_allowed", str(exc.detail), **extra)
        return error(exc.status_code, "http_error", str(exc.detail), **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(part) for part in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return error(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(AuthError)
    async def refused(request: Request, exc: AuthError) -> Response:
        route = getattr(request.scope.get("route"), "path", "?")
        event("refused", route=route, status=exc.status, error=exc.error)
        extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return error(exc.status, exc.error, exc.detail, **extra)

    @app.exception_handler(OperationalError)
    async def unavailable(_r: Request, exc: OperationalError) -> Response:
        event("error", kind="database_unavailable", exception=type(exc.orig).__name__)
        return error(
            503, "unavailable", "the database is busy or down; retry later", **{"Retry-After": "5"}
        )

    @app.exception_handler(DBAPIError)
    async def db_error(_r: Request, exc: DBAPIError) -> Response:
        event("error", kind="database_refused", exception=type(exc.orig).__name__)
        return error(
            503,
            "unavailable",
            "the database refused the request; retry later",
            **{"Retry-After": "5"},
        )

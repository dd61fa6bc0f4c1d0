"""Security headers on every response, and no-store on every attendee page.

The attendee pages carry no script; their inline styles are allowed by their hashes, so
the CSP needs no 'unsafe-inline'. Nothing is loaded from another origin.
"""

from __future__ import annotations

import base64
import hashlib

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync.server import checkin_pages, landing, withdraw_pages

ATTENDEE_PREFIX = "/r/"
CLINIC_PREFIX = "/clinic"
# The clinicians' pages load their stylesheet and script from this server only.
CLINIC_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _style_source() -> str:
    hashes = []
    for style in (landing.STYLE, withdraw_pages.STYLE, checkin_pages.STYLE):
        digest = hashlib.sha256(style.encode()).digest()
        hashes.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return " ".join(hashes)


def csp() -> str:
    return (
        f"default-src 'none'; style-src {_style_source()}; img-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts
        self.csp = csp()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        attendee = path.startswith(ATTENDEE_PREFIX)
        clinic = path.startswith(CLINIC_PREFIX)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CLINIC_CSP if clinic else self.csp
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                if self.hsts:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
                if attendee or clinic:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)

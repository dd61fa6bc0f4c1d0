"""Structured server events and the access log, neither carrying anything personal.

Events are one JSON object a line on the ``popup_kit.server.events`` logger: enrolments,
revocations, ingests (counts and kit only), refusals and errors. The access log names the
route, never the path as sent: a referral URL carries the code and the slip's signature.
No client address is logged either.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

events = logging.getLogger("popup_kit.server.events")
access = logging.getLogger("popup_kit.server.access")


def event(name: str, **fields: Any) -> None:
    """Log one event; callers pass only ids, counts and reasons, never record contents."""
    events.info(json.dumps({"event": name, **fields}, sort_keys=True, default=str))


def _route(scope: Scope) -> str:
    """The route's template (``/r/{code}``), which the router leaves in the scope."""
    return str(getattr(scope.get("route"), "path", "(no route)"))


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            access.info(
                json.dumps(
                    {
                        "method": scope.get("method", "?"),
                        "route": _route(scope),
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                    sort_keys=True,
                )
            )

"""FastAPI dependencies: the settings, the store, the code rules and the authenticated kit.

The app puts its shared parts on ``app.state``; routes reach them only through these.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from sync.server.bookings import Bookings
from sync.server.codes import CodeRules
from sync.server.limits import LandingLimits
from sync.server.settings import ServerSettings
from sync.server.store import Kit, ServerStore


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def get_store(request: Request) -> ServerStore:
    store: ServerStore = request.app.state.store
    return store


def get_rules(request: Request) -> CodeRules:
    rules: CodeRules = request.app.state.code_rules
    return rules


def get_limits(request: Request) -> LandingLimits:
    limits: LandingLimits = request.app.state.landing_limits
    return limits


def get_bookings(request: Request) -> Bookings:
    bookings: Bookings = request.app.state.bookings
    return bookings


Settings = Annotated[ServerSettings, Depends(get_settings)]
Store = Annotated[ServerStore, Depends(get_store)]
Rules = Annotated[CodeRules, Depends(get_rules)]
Limits = Annotated[LandingLimits, Depends(get_limits)]
Calls = Annotated[Bookings, Depends(get_bookings)]


class KitAuth:
    """The request's bearer credential. The body intake has refused a wrong one before
    reading the body (``limits.BodyIntake``); the route checks it again when it asks."""

    def __init__(self, store: ServerStore, authorization: str | None) -> None:
        self._store = store
        self._authorization = authorization

    def kit(self) -> Kit:
        """The kit this request's credential belongs to (401/403 otherwise)."""
        return self._store.authenticate(self._authorization)


def kit_auth(store: Store, authorization: str | None = Header(default=None)) -> KitAuth:
    return KitAuth(store, authorization)


AuthenticatedKit = Annotated[KitAuth, Depends(kit_auth)]

"""The central triage server: receives kits' records and serves referral landing pages."""

from __future__ import annotations

from sync.server.app import create_app
from sync.server.store import ServerStore

__all__ = ["ServerStore", "create_app"]

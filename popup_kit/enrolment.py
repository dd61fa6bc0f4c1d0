"""Whether this kit is enrolled with a triage server, read without opening the store."""

from __future__ import annotations

from popup_kit.config import KitConfig
from sync.credentials import KitCredentials

__all__ = ["NotEnrolled", "credentials", "require_credentials"]


class NotEnrolled(RuntimeError):
    """This kit has no credentials for a triage server yet."""


def credentials(config: KitConfig) -> KitCredentials | None:
    return KitCredentials.load(config.data_dir)


def require_credentials(config: KitConfig) -> KitCredentials:
    found = credentials(config)
    if found is None:
        raise NotEnrolled(
            "this kit is not enrolled with a triage server: ask the coordinator for a "
            "token (popup-kit server enroll KIT_ID on the server), then run "
            "popup-kit enroll SERVER_URL TOKEN"
        )
    return found

"""Whether this kit is enrolled with a triage server, read without opening the store."""

from __future__ import annotations

import json

from popup_kit.config import KitConfig
from sync.credentials import CREDENTIALS_FILE, KitCredentials

__all__ = ["SEALED_CREDENTIALS", "NotEnrolled", "enrolled_with", "require_credentials"]

# Sealed by popup_kit.vault; the server URL and kit id beside the ciphertext are not secret.
SEALED_CREDENTIALS = "server-credentials.sealed"


class NotEnrolled(RuntimeError):
    """This kit has no credentials for a triage server yet."""


def enrolled_with(config: KitConfig) -> str | None:
    """The server this kit is enrolled with, or None; needs no passphrase."""
    for name in (SEALED_CREDENTIALS, CREDENTIALS_FILE):
        path = config.data_dir / name
        try:
            doc = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            continue
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is damaged: enrol this kit again ({exc})") from exc
        url = doc.get("server_url") if isinstance(doc, dict) else None
        if not isinstance(url, str):
            raise ValueError(f"{path} is damaged: enrol this kit again (no server_url)")
        return url
    return None


def require_credentials(config: KitConfig) -> KitCredentials:
    from popup_kit.vault import credentials

    found = credentials(config)
    if found is None:
        raise NotEnrolled(
            "this kit is not enrolled with a triage server: ask the coordinator for a "
            "token (popup-kit server enroll KIT_ID on the server), then run "
            "popup-kit enroll SERVER_URL TOKEN"
        )
    return found

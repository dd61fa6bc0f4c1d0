"""What enrolment gives a kit, kept in its data directory.

Standard library only: `popup-kit info` reads it without loading the wire protocol.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CREDENTIALS_FILE", "KitCredentials", "auth_header"]


def auth_header(kit_id: str, credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {kit_id}:{credential}"}


CREDENTIALS_FILE = "server-credentials.json"


@dataclass(frozen=True)
class KitCredentials:
    """What enrolment gives a kit; kept in its data directory, readable only by its owner."""

    server_url: str
    kit_id: str
    credential: str
    receipt_key: bytes

    def headers(self) -> dict[str, str]:
        return auth_header(self.kit_id, self.credential)

    def save(self, data_dir: Path) -> Path:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / CREDENTIALS_FILE
        tmp = path.with_suffix(".tmp")
        payload = {
            "server_url": self.server_url,
            "kit_id": self.kit_id,
            "credential": self.credential,
            "receipt_key": base64.b64encode(self.receipt_key).decode("ascii"),
        }
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, data_dir: Path) -> KitCredentials | None:
        path = data_dir / CREDENTIALS_FILE
        try:
            data = json.loads(path.read_text("utf-8"))
            return cls(
                server_url=str(data["server_url"]),
                kit_id=str(data["kit_id"]),
                credential=str(data["credential"]),
                receipt_key=base64.b64decode(data["receipt_key"], validate=True),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"{path} is damaged: enrol this kit again ({exc})") from exc

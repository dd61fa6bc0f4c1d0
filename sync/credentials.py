"""What enrolment gives a kit, kept in its data directory.

Standard library only: `popup-kit info` reads it without loading the wire protocol.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from sync.files import atomic_write, private_dir

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
        payload = {
            "server_url": self.server_url,
            "kit_id": self.kit_id,
            "credential": self.credential,
            "receipt_key": base64.b64encode(self.receipt_key).decode("ascii"),
        }
        private_dir(data_dir)
        return atomic_write(data_dir / CREDENTIALS_FILE, json.dumps(payload).encode("utf-8"))

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

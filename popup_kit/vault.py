"""The kit's two secrets outside the visit store, sealed with the store's own key.

The server credentials (the credential that lets a kit send records, and the receipt key)
and the slip-signing key (whoever holds it can print slips the server believes) are kept in
files of the data folder, each sealed with AES-256-GCM under a key derived (HKDF-SHA256)
from the store's data key. So a copy of the data folder gives neither without the booth
passphrase or the recovery key, exactly as for the visits; and a sealed file moved onto
another kit's store does not open.

Each sealed file keeps beside the ciphertext only what is not secret (the kit id and the
server URL), so `popup-kit info` says where the kit is enrolled without the passphrase.

Files written by releases before sealing (``server-credentials.json``,
``kit-slip-key.json``) are sealed on first use and the plain copies overwritten and removed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from popup_kit.config import KitConfig
from popup_kit.enrolment import SEALED_CREDENTIALS
from popup_kit.store.db import StoreError
from popup_kit.store.keys import unlocked_key
from printouts.payload import KitKey, new_kit_key
from sync.credentials import CREDENTIALS_FILE, KitCredentials
from sync.files import atomic_write, fsync_dir, private_dir, shred

__all__ = [
    "PLAIN_CREDENTIALS",
    "PLAIN_SLIP_KEY",
    "SEALED_CREDENTIALS",
    "SEALED_SLIP_KEY",
    "SecretError",
    "credentials",
    "kit_key",
    "save_credentials",
]

SEALED_SLIP_KEY = "kit-slip-key.sealed"
PLAIN_CREDENTIALS = CREDENTIALS_FILE  # as releases before sealing wrote it
PLAIN_SLIP_KEY = "kit-slip-key.json"
FORMAT = 1


class SecretError(StoreError):
    """A sealed file that does not open with this store's key, or is damaged."""


def _seal_key(config: KitConfig, purpose: str) -> bytes:
    data_key = unlocked_key(config.db_path)
    if data_key is None:
        from popup_kit.store import Store  # opens (or creates) it with the passphrase

        Store(config.db_path).close()
        data_key = unlocked_key(config.db_path)
    if data_key is None:
        raise SecretError("the visit store is not encrypted: its sealed files cannot be opened")
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"popup-kit sealed file: " + purpose.encode("ascii"),
    ).derive(data_key)


def _aad(name: str, public: dict[str, str]) -> bytes:
    """What the ciphertext is bound to: its file name and the public part beside it."""
    return json.dumps({"file": name, **public}, sort_keys=True).encode("utf-8")


def _sealed_bytes(config: KitConfig, name: str, secret: bytes, public: dict[str, str]) -> bytes:
    nonce = os.urandom(12)
    sealed = AESGCM(_seal_key(config, name)).encrypt(nonce, secret, _aad(name, public))
    doc = {"format": FORMAT, **public, "sealed": base64.b64encode(nonce + sealed).decode("ascii")}
    return json.dumps(doc).encode("utf-8")


def _write_sealed(config: KitConfig, name: str, secret: bytes, public: dict[str, str]) -> Path:
    private_dir(config.data_dir)
    return atomic_write(config.data_dir / name, _sealed_bytes(config, name, secret, public))


def _read_sealed(config: KitConfig, name: str) -> tuple[bytes, dict[str, str]] | None:
    path = config.data_dir / name
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SecretError(f"{path} is damaged: {exc}") from exc
    try:
        raw = base64.b64decode(doc.pop("sealed"), validate=True)
        doc.pop("format")
        public = {str(k): str(v) for k, v in doc.items()}
    except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise SecretError(f"{path} is damaged: {exc}") from exc
    try:
        secret = AESGCM(_seal_key(config, name)).decrypt(raw[:12], raw[12:], _aad(name, public))
    except (InvalidTag, ValueError) as exc:
        raise SecretError(
            f"{path} does not open with this kit's store: it belongs to another kit or is damaged"
        ) from exc
    return secret, public


# --- the server credentials -------------------------------------------------------------


def save_credentials(config: KitConfig, creds: KitCredentials) -> Path:
    """Seal what enrolment gave this kit into the data folder."""
    secret = json.dumps(
        {
            "credential": creds.credential,
            "receipt_key": base64.b64encode(creds.receipt_key).decode("ascii"),
        }
    ).encode("utf-8")
    path = _write_sealed(
        config,
        SEALED_CREDENTIALS,
        secret,
        {"server_url": creds.server_url, "kit_id": creds.kit_id},
    )
    shred(config.data_dir / PLAIN_CREDENTIALS)
    return path


def credentials(config: KitConfig) -> KitCredentials | None:
    """This kit's server credentials, or None before enrolment. A plain file left by an
    earlier release is sealed now and the plain copy removed."""
    plain = config.data_dir / PLAIN_CREDENTIALS
    if plain.exists():
        legacy = KitCredentials.load(config.data_dir)
        if legacy is not None:
            save_credentials(config, legacy)
            return legacy
    found = _read_sealed(config, SEALED_CREDENTIALS)
    if found is None:
        return None
    secret, public = found
    try:
        inner: dict[str, Any] = json.loads(secret)
        return KitCredentials(
            server_url=public["server_url"],
            kit_id=public["kit_id"],
            credential=str(inner["credential"]),
            receipt_key=base64.b64decode(inner["receipt_key"], validate=True),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SecretError(
            f"{config.data_dir / SEALED_CREDENTIALS} is damaged: enrol this kit again ({exc})"
        ) from exc


# --- the slip-signing key ---------------------------------------------------------------


def _legacy_slip_key(path: Path, kit_id: str) -> KitKey | None:
    try:
        doc = json.loads(path.read_text("ascii"))
        secret = bytes.fromhex(doc["secret"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise SecretError(f"the kit's slip key {path} is unreadable: {exc}") from exc
    return KitKey(kit_id=str(doc.get("kit_id") or kit_id), secret=secret)


def kit_key(config: KitConfig) -> KitKey:
    """The kit's slip-signing key, made and sealed on first use.

    Two processes starting at once end up with the same key: the sealed file is linked
    into place only if none is there yet, and both then read the one that is.
    """
    path = config.data_dir / SEALED_SLIP_KEY
    plain = config.data_dir / PLAIN_SLIP_KEY
    if not path.exists():
        _link_sealed(config, _legacy_slip_key(plain, config.kit_id) or new_kit_key(config.kit_id))
    shred(plain)
    found = _read_sealed(config, SEALED_SLIP_KEY)
    if found is None:
        raise SecretError(f"the kit's slip key {path} is missing")
    secret, public = found
    if len(secret) < 16:
        raise SecretError(f"the kit's slip key {path} is too short")
    return KitKey(kit_id=public.get("kit_id") or config.kit_id, secret=secret)


def _link_sealed(config: KitConfig, key: KitKey) -> None:
    """Seal ``key`` under its final name without replacing one already there."""
    private_dir(config.data_dir)
    staged = config.data_dir / f".{SEALED_SLIP_KEY}.{os.getpid()}.{secrets.token_hex(4)}"
    body = _sealed_bytes(config, SEALED_SLIP_KEY, key.secret, {"kit_id": key.kit_id})
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(staged, config.data_dir / SEALED_SLIP_KEY)
        fsync_dir(config.data_dir)
    finally:
        staged.unlink(missing_ok=True)

"""The store's key: a random data key, kept only wrapped.

The SQLite file is encrypted by SQLCipher with a random 256-bit data key given raw (so
opening the file costs no key derivation). That key is stored twice in ``<store>.keys``,
wrapped with AES-256-GCM:

- by a key derived from the booth passphrase with Argon2id (RFC 9106's second
  recommended setting: 3 passes over 64 MiB, 4 lanes): the slow step a thief must repeat
  for every guess;
- by a recovery key shown once at set-up (160 random bits, so a fast derivation suffices),
  for the coordinator to keep apart from the laptop.

Changing the passphrase rewraps the data key under a fresh salt; the database is not
rewritten. The key file holds no personal data and is useless without the passphrase or
the recovery key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from popup_kit.store.db import StoreError
from sync.files import atomic_write

FORMAT = 1
PASSPHRASE_AAD = b"popup-kit store key: passphrase"
RECOVERY_AAD = b"popup-kit store key: recovery"
MIN_PASSPHRASE = 8
ENV_PASSPHRASE = "POPUP_KIT_PASSPHRASE"
# Only the test suite sets this: stores it creates use a cheap derivation (recorded in
# their key file), so hundreds of throwaway stores do not each cost half a second.
ENV_TEST_KDF = "POPUP_KIT_TEST_CHEAP_KDF"


class PassphraseNeeded(StoreError):
    """The store is encrypted (or about to be) and no passphrase was given."""


class WrongPassphrase(StoreError):
    """The passphrase (or recovery key) does not open this store."""


@dataclass(frozen=True)
class KdfParams:
    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    @classmethod
    def for_new_store(cls) -> KdfParams:
        if os.environ.get(ENV_TEST_KDF) == "1":
            return cls(time_cost=1, memory_kib=64, parallelism=1)
        return cls()


def key_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".keys")


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    from argon2.low_level import Type, hash_secret_raw

    return hash_secret_raw(
        passphrase.encode("utf-8"),
        salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
    )


def _recovery_kek(recovery: bytes) -> bytes:
    return hashlib.blake2b(recovery, digest_size=32, person=b"popup-kit-recov").digest()


def _seal(kek: bytes, data_key: bytes, aad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, aad)


def _open(kek: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(kek).decrypt(sealed[:12], sealed[12:], aad)
    except (InvalidTag, ValueError):
        return None


def format_recovery(raw: bytes) -> str:
    text = base64.b32encode(raw).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def parse_recovery(text: str) -> bytes:
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    try:
        raw = base64.b32decode(cleaned)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise WrongPassphrase("that is not a recovery key (8 groups of 4 letters and digits)")
    return raw


def check_new_passphrase(passphrase: str) -> None:
    if len(passphrase.strip()) < MIN_PASSPHRASE:
        raise StoreError(f"the passphrase needs at least {MIN_PASSPHRASE} characters")


@dataclass(frozen=True)
class KeyFile:
    salt: bytes
    params: KdfParams
    by_passphrase: bytes
    by_recovery: bytes

    def to_json(self) -> str:
        def b64(value: bytes) -> str:
            return base64.b64encode(value).decode("ascii")

        return json.dumps(
            {
                "format": FORMAT,
                "cipher": "sqlcipher4 raw key; wrapped with AES-256-GCM",
                "kdf": {
                    "name": "argon2id",
                    "salt": b64(self.salt),
                    "time_cost": self.params.time_cost,
                    "memory_kib": self.params.memory_kib,
                    "parallelism": self.params.parallelism,
                },
                "by_passphrase": b64(self.by_passphrase),
                "by_recovery": b64(self.by_recovery),
            },
            indent=2,
        )

    @classmethod
    def load(cls, path: Path) -> KeyFile:
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise StoreError(f"{path}: unknown key file format {data.get('format')!r}")
            kdf = data["kdf"]
            return cls(
                salt=base64.b64decode(kdf["salt"]),
                params=KdfParams(
                    int(kdf["time_cost"]), int(kdf["memory_kib"]), int(kdf["parallelism"])
                ),
                by_passphrase=base64.b64decode(data["by_passphrase"]),
                by_recovery=base64.b64decode(data["by_recovery"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the store's key file {path} is damaged: {exc}") from exc

    def save(self, path: Path) -> None:
        atomic_write(path, self.to_json().encode("utf-8"))

    def unwrap(self, passphrase: str) -> bytes:
        key = _open(_derive(passphrase, self.salt, self.params), self.by_passphrase, PASSPHRASE_AAD)
        if key is None:
            raise WrongPassphrase("wrong passphrase: the store stays locked and unchanged")
        return key

    def unwrap_recovery(self, recovery_text: str) -> bytes:
        raw = parse_recovery(recovery_text)
        key = _open(_recovery_kek(raw), self.by_recovery, RECOVERY_AAD)
        if key is None:
            raise WrongPassphrase("wrong recovery key: the store stays locked and unchanged")
        return key

    def rewrapped(self, data_key: bytes, passphrase: str) -> KeyFile:
        """The same data key under a new passphrase (fresh salt, current strength)."""
        check_new_passphrase(passphrase)
        salt = secrets.token_bytes(16)
        params = KdfParams.for_new_store()
        return replace(
            self,
            salt=salt,
            params=params,
            by_passphrase=_seal(_derive(passphrase, salt, params), data_key, PASSPHRASE_AAD),
        )


def new_keys(passphrase: str) -> tuple[bytes, KeyFile, str]:
    """A fresh data key, its key file, and the recovery key to show once."""
    check_new_passphrase(passphrase)
    data_key = secrets.token_bytes(32)
    recovery = secrets.token_bytes(20)
    salt = secrets.token_bytes(16)
    params = KdfParams.for_new_store()
    keyfile = KeyFile(
        salt=salt,
        params=params,
        by_passphrase=_seal(_derive(passphrase, salt, params), data_key, PASSPHRASE_AAD),
        by_recovery=_seal(_recovery_kek(recovery), data_key, RECOVERY_AAD),
    )
    return data_key, keyfile, format_recovery(recovery)


# --- opening the store ----------------------------------------------------------------

_session_passphrase: str | None = None
# The data keys of the stores this process has opened, by path: the kit's sealed files
# (popup_kit.vault) are sealed under keys derived from them.
_unlocked: dict[Path, bytes] = {}


def remember_key(db_path: Path, key: bytes) -> None:
    _unlocked[db_path.resolve()] = key


def unlocked_key(db_path: Path) -> bytes | None:
    """The data key of the store at ``db_path`` if this process has opened it."""
    return _unlocked.get(db_path.resolve())


def remember_passphrase(passphrase: str | None) -> None:
    """The passphrase typed at start of day, for the stores this process opens."""
    global _session_passphrase
    _session_passphrase = passphrase


def given_passphrase(passphrase: str | None = None) -> str | None:
    if passphrase is not None:
        return passphrase
    if _session_passphrase is not None:
        return _session_passphrase
    return os.environ.get(ENV_PASSPHRASE) or None


@dataclass(frozen=True)
class Unlocked:
    key: bytes
    recovery_key: str | None  # set only when the store's keys were just made: show once
    encrypted_plain: bool  # a plain store was found and encrypted in place


def _siblings(db_path: Path) -> list[Path]:
    """The plain copies a plain store leaves: its WAL, shared memory and schema backups."""
    folder = db_path.parent
    found = [db_path.with_name(db_path.name + s) for s in ("-wal", "-shm", "-journal")]
    found += sorted(folder.glob(f"{db_path.name}.schema-*.bak"))
    return found


def encrypt_in_place(db_path: Path, key: bytes) -> None:
    """Turn a plain SQLite file into a SQLCipher one with ``key``, keeping every row,
    then overwrite and remove the plain bytes. Safe to run again after a crash."""
    from sync.files import fsync_dir, shred
    from sync.sqlite import export_encrypted, is_plain

    old = db_path.with_name(db_path.name + ".plain-old")
    if is_plain(db_path):
        new = db_path.with_name(db_path.name + ".encrypting")
        export_encrypted(db_path, new, key)
        old.unlink(missing_ok=True)
        os.link(db_path, old)  # the plain inode stays reachable until overwritten
        os.replace(new, db_path)
        fsync_dir(db_path.parent)
    shred(old)
    for sibling in _siblings(db_path):
        if sibling.suffix == ".bak" and is_plain(sibling):
            enc = sibling.with_name(sibling.name + ".encrypting")
            export_encrypted(sibling, enc, key)
            plain_old = sibling.with_name(sibling.name + ".plain-old")
            os.link(sibling, plain_old)
            os.replace(enc, sibling)
            shred(plain_old)
        elif sibling.suffix != ".bak":
            shred(sibling)


def unlock(db_path: Path, passphrase: str | None = None) -> Unlocked:
    """The data key of the store at ``db_path``: from its key file with the passphrase,
    or new keys when the store has none yet (a new store, or a plain one to encrypt).

    Refuses without changing anything when the passphrase is missing or wrong.
    """
    from sync.sqlite import is_plain

    given = given_passphrase(passphrase)
    kpath = key_path(db_path)
    if kpath.exists():
        if given is None:
            raise PassphraseNeeded(
                f"the visit store is encrypted: give its passphrase ({ENV_PASSPHRASE})"
            )
        keyfile = KeyFile.load(kpath)
        key = keyfile.unwrap(given)
        plain = is_plain(db_path)
        if plain or db_path.with_name(db_path.name + ".plain-old").exists():
            encrypt_in_place(db_path, key)  # finish an encryption cut short
        return Unlocked(key, None, plain)
    if given is None:
        raise PassphraseNeeded(
            "the visit store has no passphrase yet: set one with `popup-kit passphrase set`"
            f" (or {ENV_PASSPHRASE})"
        )
    has_plain = is_plain(db_path)
    if db_path.exists() and db_path.stat().st_size > 0 and not has_plain:
        raise StoreError(f"{db_path} is encrypted but its key file {kpath} is missing")
    key, keyfile, recovery = new_keys(given)
    keyfile.save(kpath)  # before any encrypted byte exists: the key is never lost
    if has_plain:
        encrypt_in_place(db_path, key)
    elif db_path.exists():
        db_path.unlink()  # an empty file: SQLCipher writes its own header
    return Unlocked(key, recovery, has_plain)


# --- the coordinator's operations -------------------------------------------------------


def store_state(db_path: Path) -> str:
    """``new`` (nothing yet), ``plain`` (to encrypt) or ``encrypted``."""
    from sync.sqlite import is_plain

    if key_path(db_path).exists():
        return "encrypted"
    return "plain" if is_plain(db_path) else "new"


def verify(db_path: Path, passphrase: str) -> None:
    """Raises ``WrongPassphrase`` unless ``passphrase`` opens this store (unlocking the
    screen checks the passphrase without reopening the store)."""
    KeyFile.load(key_path(db_path)).unwrap(passphrase)


def change_passphrase(db_path: Path, current: str, new: str) -> None:
    kpath = key_path(db_path)
    keyfile = KeyFile.load(kpath)
    keyfile.rewrapped(keyfile.unwrap(current), new).save(kpath)


def recover(db_path: Path, recovery_key: str, new: str) -> None:
    """A new passphrase from the recovery key; the recovery key stays valid."""
    kpath = key_path(db_path)
    keyfile = KeyFile.load(kpath)
    keyfile.rewrapped(keyfile.unwrap_recovery(recovery_key), new).save(kpath)

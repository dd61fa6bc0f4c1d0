"""The sync wire protocol, shared by the kit and the central triage server.

Every response body of the server carries ``protocol``/``protocol_version`` and the
``X-Popup-Kit-Protocol`` header, so that a captive-portal page answering 200 is never
taken for the server. Receipts are HMAC-SHA256 signatures made with a per-kit receipt
key handed to the kit at enrolment.

Withdrawals made at the centre (an attendee on the slip's page): ``GET /api/v1/withdrawals``,
authenticated as the kit, lists the referral codes of that kit's own slips whose holder
withdrew consent, and never another kit's. The kit applies each one as a withdrawal at the
booth would be applied (idempotent: a code already withdrawn, or not in its store, changes
nothing) and sends its own withdrawal record as usual; that record's arrival is the
acknowledgement, after which the code is no longer listed. Until then it is listed at
every sync, which costs a few bytes a code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from sync.bodies import upgrade_v1

# The credentials live in their own light module; re-exported for the protocol's users.
from sync.credentials import CREDENTIALS_FILE as CREDENTIALS_FILE
from sync.credentials import KitCredentials as KitCredentials
from sync.credentials import auth_header as auth_header
from sync.records import SCHEMA_VERSION, RecordType, content_hash

PROTOCOL: Literal["popup-kit-sync"] = "popup-kit-sync"
PROTOCOL_VERSION = 1
PROTOCOL_HEADER = "X-Popup-Kit-Protocol"
MAX_BATCH = 500
MAX_HAVE = 2000
API_PREFIX = "/api/v1"

RecordStatus = Literal["accepted", "already_received", "conflict", "rejected"]

# Identifiers are short printable ASCII: UUIDs, kit ids, referral codes.
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$"
ID_PATTERN = _ID
_HEX64 = r"^[0-9a-f]{64}$"
_B64_KEY = r"^(?:[A-Za-z0-9+/]{4}){5,21}(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$"
_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Marked(BaseModel):
    """Base of every server response body: the protocol's own marker."""

    protocol: Literal["popup-kit-sync"] = PROTOCOL
    protocol_version: int = PROTOCOL_VERSION


class Envelope(_Strict):
    """One record as ``sync.records.make_record`` builds it, plus the kit's content hash."""

    record_id: str = Field(pattern=_ID)
    record_type: RecordType
    schema_version: int = Field(ge=1, le=1000)
    kit_id: str = Field(pattern=_ID)
    created_at: str = Field(pattern=_TIME)
    body: dict[str, Any]
    content_hash: str = Field(pattern=_HEX64)

    def record(self) -> dict[str, Any]:
        """The envelope without its hash: what the hash is computed over."""
        return self.model_dump(exclude={"content_hash"})

    def computed_hash(self) -> str:
        return content_hash(self.record())

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Envelope:
        """Wrap a record from ``make_record`` with its content hash."""
        data = dict(record)
        data.pop("content_hash", None)
        return cls(**data, content_hash=content_hash(data))


class IngestRequest(_Strict):
    kit_id: str = Field(pattern=_ID)
    records: list[Envelope] = Field(max_length=MAX_BATCH)


class Receipt(_Strict):
    record_id: str
    content_hash: str
    received_at: str
    signature: str


class RecordResult(_Strict):
    record_id: str
    status: RecordStatus
    reason: str = ""
    receipt: Receipt | None = None


class IngestResponse(Marked):
    results: list[RecordResult]


class HaveRequest(_Strict):
    record_ids: list[str] = Field(max_length=MAX_HAVE)


class HaveItem(_Strict):
    record_id: str
    content_hash: str
    receipt: Receipt


class HaveResponse(Marked):
    have: list[HaveItem]


class EnrollRequest(_Strict):
    token: str = Field(min_length=8, max_length=200)
    kit_id: str = Field(pattern=_ID)
    slip_key: str = Field(pattern=_B64_KEY, description="base64 slip-signing key, 16-66 bytes")


class EnrollResponse(Marked):
    kit_id: str
    credential: str
    receipt_key: str = Field(
        description="base64 Ed25519 public key of the server: it verifies every receipt"
    )
    receipt_alg: Literal["ed25519"] = "ed25519"


class CentreWithdrawal(_Strict):
    referral_code: str = Field(pattern=_ID)
    withdrawn_at: str = Field(pattern=_TIME)


class WithdrawalsResponse(Marked):
    withdrawals: list[CentreWithdrawal]


class HealthResponse(Marked):
    status: Literal["ok"] = "ok"
    schema_versions: list[int]
    max_batch: int = MAX_BATCH


class ErrorResponse(Marked):
    error: str
    detail: str = ""


# --- receipts -------------------------------------------------------------------------


def receipt_message(record_id: str, content_hash: str, received_at: str) -> bytes:
    return f"{record_id}|{content_hash}|{received_at}".encode()


# A kit's stored receipt key says how receipts are checked: ``ed25519:`` and the server's
# public key, or (kits enrolled before signatures were asymmetric) a bare HMAC secret.
ED25519_PREFIX = b"ed25519:"


def ed25519_receipt_key(public_key: bytes) -> bytes:
    """The receipt key a kit keeps for a server whose receipts are Ed25519-signed."""
    return ED25519_PREFIX + public_key


def sign_receipt(key: bytes, record_id: str, content_hash: str, received_at: str) -> Receipt:
    """An HMAC receipt (kits enrolled before Ed25519); see ``sign_receipt_ed25519``."""
    mac = hmac.new(key, receipt_message(record_id, content_hash, received_at), hashlib.sha256)
    return Receipt(
        record_id=record_id,
        content_hash=content_hash,
        received_at=received_at,
        signature=mac.hexdigest(),
    )


def sign_receipt_ed25519(
    private_key: Ed25519PrivateKey, record_id: str, content_hash: str, received_at: str
) -> Receipt:
    signature = private_key.sign(receipt_message(record_id, content_hash, received_at))
    return Receipt(
        record_id=record_id,
        content_hash=content_hash,
        received_at=received_at,
        signature=signature.hex(),
    )


def verify_receipt(
    receipt: Receipt,
    key: bytes,
    *,
    record_id: str | None = None,
    content_hash: str | None = None,
) -> bool:
    """True when the server signed this receipt for ``key`` (and, if given, for this record).

    ``key`` is what the kit keeps: ``ed25519:`` and the server's public key, or an HMAC
    secret. An Ed25519 key never accepts an HMAC receipt (its public key is no secret).
    """
    if record_id is not None and receipt.record_id != record_id:
        return False
    if content_hash is not None and receipt.content_hash != content_hash:
        return False
    message = receipt_message(receipt.record_id, receipt.content_hash, receipt.received_at)
    if key.startswith(ED25519_PREFIX):
        try:
            public = Ed25519PublicKey.from_public_bytes(key[len(ED25519_PREFIX) :])
            public.verify(bytes.fromhex(receipt.signature), message)
        except (InvalidSignature, ValueError):
            return False
        return True
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, receipt.signature)


# --- recognising the server ---------------------------------------------------------


def is_protocol_response(
    status: int, headers: Mapping[str, str], body: bytes | str | Mapping[str, Any]
) -> bool:
    """True only for a body the triage server made: header and marker both present.

    ``status`` is not judged here (errors carry the marker too); it only has to be HTTP.
    """
    if not 100 <= status <= 599:
        return False
    header = next((v for k, v in headers.items() if k.lower() == PROTOCOL_HEADER.lower()), None)
    if header != str(PROTOCOL_VERSION):
        return False
    data: Any = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return False
    return (
        isinstance(data, Mapping)
        and data.get("protocol") == PROTOCOL
        and data.get("protocol_version") == PROTOCOL_VERSION
    )


# --- schema versions ---------------------------------------------------------------

CURRENT_SCHEMA_VERSION = SCHEMA_VERSION
Upgrade = Callable[[str, dict[str, Any]], dict[str, Any]]
# UPGRADES[n] turns a body of schema version n into version n + 1 (record_type, body).
UPGRADES: dict[int, Upgrade] = {1: upgrade_v1}


class SchemaVersionError(ValueError):
    pass


def upgrade_body(record_type: str, schema_version: int, body: dict[str, Any]) -> dict[str, Any]:
    """A body of any earlier schema version brought up to the current one."""
    if schema_version < 1 or schema_version > CURRENT_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"schema version {schema_version} is not supported "
            f"(this server reads 1 to {CURRENT_SCHEMA_VERSION})"
        )
    out = dict(body)
    for version in range(schema_version, CURRENT_SCHEMA_VERSION):
        step = UPGRADES.get(version)
        if step is None:
            raise SchemaVersionError(f"no upgrade from schema version {version}")
        out = step(record_type, out)
    return out

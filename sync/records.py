"""The sync record envelope and its content hash.

Every record a kit sends (a visit version, a consent event, a void) is one envelope;
``record_id`` plus ``content_hash`` is its identity on both sides.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

# Version 2: typed bodies whose shape consent decides (sync.bodies); 1 before that.
SCHEMA_VERSION = 2
RecordType = Literal["visit", "consent", "consent_withdrawal"]
RECORD_TYPES: tuple[RecordType, ...] = ("visit", "consent", "consent_withdrawal")


def canonical_json(obj: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


def make_record(
    *,
    record_id: str,
    record_type: RecordType,
    kit_id: str,
    created_at: str,
    body: dict[str, Any],
    schema_version: int = SCHEMA_VERSION,
) -> dict[str, Any]:
    """The envelope. ``created_at`` is UTC ISO 8601 ending in ``Z``."""
    if record_type not in RECORD_TYPES:
        raise ValueError(f"unknown record type {record_type!r}")
    return {
        "record_id": record_id,
        "record_type": record_type,
        "schema_version": schema_version,
        "kit_id": kit_id,
        "created_at": created_at,
        "body": body,
    }

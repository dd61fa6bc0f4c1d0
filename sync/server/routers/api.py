"""The sync API kits talk to: health, enrolment, ingest, have, withdrawals."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Any

from fastapi import APIRouter

from sync import protocol as p
from sync.server.deps import AuthenticatedKit, Store
from sync.server.events import event
from sync.server.store import AuthError

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": p.ErrorResponse},
    401: {"model": p.ErrorResponse},
    403: {"model": p.ErrorResponse},
    413: {"model": p.ErrorResponse},
    422: {"model": p.ErrorResponse},
}

router = APIRouter(prefix=p.API_PREFIX)


@router.get("/health", response_model=p.HealthResponse)
def health() -> p.HealthResponse:
    return p.HealthResponse(schema_versions=list(range(1, p.CURRENT_SCHEMA_VERSION + 1)))


@router.post("/enroll", response_model=p.EnrollResponse, responses=_RESPONSES)
def enroll(request: p.EnrollRequest, store: Store) -> p.EnrollResponse:
    try:
        slip_key = base64.b64decode(request.slip_key, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthError(422, "invalid_request", "slip_key must be base64") from exc
    if len(slip_key) < 16:
        raise AuthError(422, "invalid_request", "slip_key must be at least 16 bytes")
    credential, public_key = store.enroll(request.token, request.kit_id, slip_key)
    event("enrolled", kit_id=request.kit_id)
    return p.EnrollResponse(
        kit_id=request.kit_id,
        credential=credential,
        receipt_key=base64.b64encode(public_key).decode("ascii"),
    )


@router.post("/ingest", response_model=p.IngestResponse, responses=_RESPONSES)
def ingest(request: p.IngestRequest, store: Store, auth: AuthenticatedKit) -> p.IngestResponse:
    kit = auth.kit()
    if request.kit_id != kit.kit_id:
        raise AuthError(
            403, "wrong_kit", f"this credential is for kit {kit.kit_id}, not {request.kit_id}"
        )
    results = store.ingest(kit, request.records)
    counts = Counter(r.status for r in results)
    event(
        "ingest", kit_id=kit.kit_id, records=len(results), **{str(k): n for k, n in counts.items()}
    )
    return p.IngestResponse(results=results)


@router.post("/have", response_model=p.HaveResponse, responses=_RESPONSES)
def have(request: p.HaveRequest, store: Store, auth: AuthenticatedKit) -> p.HaveResponse:
    return p.HaveResponse(have=store.have(auth.kit(), request.record_ids))


@router.get("/withdrawals", response_model=p.WithdrawalsResponse, responses=_RESPONSES)
def withdrawals(store: Store, auth: AuthenticatedKit) -> p.WithdrawalsResponse:
    """The withdrawals made on the slip's page for this kit's own codes (see the protocol)."""
    kit = auth.kit()
    found = store.withdrawals_for(kit)
    event("withdrawals_listed", kit_id=kit.kit_id, withdrawals=len(found))
    return p.WithdrawalsResponse(
        withdrawals=[
            p.CentreWithdrawal(referral_code=w.referral_code, withdrawn_at=w.withdrawn_at)
            for w in found
        ]
    )

"""The kit asks the centre which of its own slips' holders withdrew consent on the slip's
page (``GET /api/v1/withdrawals``, see ``sync.protocol``). One request per sync run, with
the run's timeouts; a failure is only reported, since the next run asks again."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import ValidationError

from sync import protocol as p
from sync.client import SyncConfig, classify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CentreAnswer:
    """The codes withdrawn at the centre, or why the centre could not be asked."""

    codes: list[str] = field(default_factory=list)
    error: str = ""


def fetch_withdrawals(
    credentials: p.KitCredentials, config: SyncConfig | None = None
) -> CentreAnswer:
    import requests

    cfg = config or SyncConfig()
    url = credentials.server_url.rstrip("/") + p.API_PREFIX + "/withdrawals"
    try:
        response = requests.get(
            url,
            headers={**credentials.headers(), "User-Agent": f"popup-kit-sync/{p.PROTOCOL_VERSION}"},
            timeout=(cfg.connect_timeout, cfg.read_timeout),
            allow_redirects=False,
            verify=cfg.verify_tls,
        )
    except requests.RequestException as exc:
        failure = classify(error=exc)
        return CentreAnswer(error=failure.reason if failure else str(exc))
    failure = classify(response=response)
    if failure is not None:
        return CentreAnswer(error=failure.reason)
    try:
        answer = p.WithdrawalsResponse.model_validate_json(response.content)
    except ValidationError:
        return CentreAnswer(error="the server's list of withdrawals could not be read")
    codes = list(dict.fromkeys(w.referral_code for w in answer.withdrawals))
    log.info("withdrawals made at the centre: %d", len(codes))
    return CentreAnswer(codes=codes)

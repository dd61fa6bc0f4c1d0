"""What every route from a slip's QR shares: which kit signed the slip, the network
allowance, the HTML answer (429 with its Retry-After) and the plain form a page posts."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse

from sync.server import landing
from sync.server.codes import CodeRules, signature_valid
from sync.server.limits import LandingLimits, network_key
from sync.server.store import AttendeeWithdrawal, Referral, ServerStore
from sync.server.withdraw_pages import language_of

__all__ = ["SlipState", "html", "network_limited", "owner_of", "read_form", "slip_state"]


def owner_of(store: ServerStore, rules: CodeRules, code: str, sig: str) -> str | None:
    """The kit whose slip key made ``sig`` for ``code`` (a revoked kit only for codes it
    sent before its revocation), or None."""
    holders = store.kits_with_code(code)
    # The kits that sent this code are tried first: once the visit has arrived a request
    # costs one signature check, not one per enrolled kit.
    kits = sorted(store.kits(), key=lambda kit: kit.kit_id not in holders)
    for kit in kits:
        if (
            kit.slip_key
            and (kit.revoked_reason is None or kit.kit_id in holders)
            and signature_valid(rules, code, sig, kit.slip_key)
        ):
            return kit.kit_id
    return None


@dataclass(frozen=True)
class SlipState:
    """What the centre holds for one slip of the kit that signed it, read once a request."""

    code: str
    kit_id: str
    withdrawal: AttendeeWithdrawal | None  # made on the slip's page
    referral: Referral | None  # None: the visit has not arrived

    @property
    def withdrawn(self) -> bool:
        """Withdrawn on the slip's page or at the booth."""
        return self.withdrawal is not None or (
            self.referral is not None and self.referral.withdrawn
        )

    def language(self, asked: str | None) -> str:
        """The slip's language: as withdrawn, else the visit's, else as the URL asks."""
        if self.withdrawal is not None:
            chosen: str | None = self.withdrawal.language
        elif self.referral is not None and not self.referral.withdrawn:
            chosen = self.referral.language
        else:
            chosen = asked
        return language_of(chosen)


def slip_state(store: ServerStore, code: str, kit_id: str) -> SlipState:
    return SlipState(
        code, kit_id, store.attendee_withdrawal(kit_id, code), store.referral(code, kit_id)
    )


def html(page: landing.Page, retry_after: int = 60) -> HTMLResponse:
    headers = {"Retry-After": str(retry_after)} if page.status == 429 else None
    return HTMLResponse(page.html, page.status, headers=headers)


def network_limited(request: Request, limits: LandingLimits) -> bool:
    """True when this client's network has spent its allowance (one request taken)."""
    client = request.client.host if request.client else "unknown"
    return not limits.network.take(network_key(client))


def read_form(body: bytes, *, max_bytes: int, max_fields: int) -> dict[str, str]:
    """The urlencoded form's fields (the first of each); empty when it is not one."""
    if len(body) > max_bytes:
        return {}
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=max_fields, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in fields.items() if v and v[0].isascii() and v[0].isprintable()}

"""A visit's printouts: the kit's own data turned into ``printouts`` input, rendered,
saved and sent to the printer. Used by the CLI and the UI alike; no UI here.

Everything on a visit's paper is in the visit's language (the booth name and event too);
the day summary is the coordinator's, in the kit's language. A voided visit's printouts
always carry the VOID mark and its reason, and no QR; ``superseded_by`` marks an old
version of a corrected visit the same way. While ``[server] base_url`` is the shipped
placeholder, every slip says that its QR leads nowhere yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal

from popup_kit.config import KitConfig
from popup_kit.domain import VisitRecord

if TYPE_CHECKING:
    from popup_kit.services import VisitService
    from printouts.payload import KitKey
    from printouts.printing import PrintResult
    from printouts.render import DaySummaryData, SlipData

Kind = Literal["slip", "consent"]


@dataclass(frozen=True)
class Printout:
    pdf: bytes
    kind: str  # "slip", "emergency" or "consent"
    fmt: str
    filename: str


def kit_key(config: KitConfig) -> KitKey:
    """The kit's slip-signing key, made on first use."""
    from popup_kit.vault import kit_key as sealed_kit_key

    return sealed_kit_key(config)


def visit_url(
    config: KitConfig, code: str, key: KitKey | None = None, *, language: str = "en"
) -> str:
    """The signed ``BASE/r/CODE?s=SIG&l=LANG`` address the QR carries, in the slip's language."""
    from printouts.payload import slip_url

    return slip_url(config.server_base_url, code, key or kit_key(config), language)


def slip_data(
    config: KitConfig,
    visit: VisitRecord,
    key: KitKey | None = None,
    *,
    void_reason: str | None = None,
    superseded_by: int | None = None,
) -> SlipData:
    """What the visit's printouts show. A voided visit is marked VOID with its stored
    reason; ``void_reason`` marks it so even before the store says it (it never unmarks)."""
    from printouts.render import SlipData

    language = visit.language
    if visit.voided and void_reason is None:
        void_reason = visit.void_reason or ""
    return SlipData(
        code=visit.code,
        url=visit_url(config, visit.code, key, language=language),
        level=visit.triage,
        language=language,
        booth_name=config.booth_name_in(language),
        event=config.event_in(language),
        visit_date=visit.created_at.astimezone().date(),
        reasons=[rule.reason_in(language) for rule in visit.rules],
        rule_ids=visit.rule_ids,
        emergency_number=config.emergency_number,
        consent=dict(visit.consent),
        consent_context=config.consent_context(),
        ruleset_version=visit.ruleset_version,
        consent_version=visit.consent_version,
        void_reason=void_reason,
        superseded_by=superseded_by,
        server_placeholder=config.server_is_placeholder,
    )


WHAT = {"slip": "slip", "emergency": "emergency slip", "consent": "consent copy"}


def render_visit(
    config: KitConfig,
    visit: VisitRecord,
    fmt: str | None = None,
    kind: Kind = "slip",
    *,
    void_reason: str | None = None,
    superseded_by: int | None = None,
) -> Printout:
    """The visit's slip (the emergency slip for an emergency) or its consent copy.

    Marked VOID when the visit is voided (or ``void_reason`` is given), REPLACED when
    ``superseded_by`` names the version that corrected it; a superseded version is saved
    under its own file name, so it never overwrites the current slip's PDF.
    """
    from printouts.printing import slip_filename
    from printouts.render import render_consent_copy, render_visit_slip

    fmt = fmt or config.slip_format
    data = slip_data(config, visit, void_reason=void_reason, superseded_by=superseded_by)
    if kind == "consent":
        pdf, made = render_consent_copy(data, fmt), "consent"
    else:
        pdf = render_visit_slip(data, fmt)
        made = "emergency" if visit.triage == "emergency" else "slip"
    filename = slip_filename(visit.code, fmt, made)
    if superseded_by is not None and data.void_reason is None:
        filename = filename.replace(visit.code, f"{visit.code}-v{visit.version}-replaced", 1)
    return Printout(pdf, made, fmt, filename)


def print_visit(
    config: KitConfig,
    visit: VisitRecord,
    fmt: str | None = None,
    kind: Kind = "slip",
    *,
    void_reason: str | None = None,
    superseded_by: int | None = None,
) -> PrintResult:
    """Save the printout where the volunteer can find it, then send it to the printer."""
    from printouts.printing import print_pdf

    made = render_visit(
        config, visit, fmt, kind, void_reason=void_reason, superseded_by=superseded_by
    )
    what = WHAT.get(made.kind, made.kind)
    if void_reason is not None or visit.voided:
        what = f"VOID {what}"
    elif superseded_by is not None:
        what = f"replaced {what}"
    return print_pdf(made.pdf, config.printer_name, config.slips_dir, made.filename, what=what)


def day_summary(config: KitConfig, service: VisitService, day: date) -> DaySummaryData:
    from printouts.render import DaySummaryData

    counts = service.counts_for_day(day)
    visits = sum(v for k, v in counts.items() if k not in ("ineligible", "consent_refused"))
    # everyone who reached the consent items: recorded visits and those who refused C1
    asked = visits + counts.get("consent_refused", 0)
    unsent = service.unsent()
    return DaySummaryData(
        booth_name=config.booth_name,
        event=config.event,
        day=day,
        counts_by_outcome=counts,
        consent_granted=service.consent_counts_for_day(day),
        visits=visits,
        unsent=unsent.visits,
        oldest_unsent=unsent.oldest,
        kit_id=config.kit_id,
        language=config.default_language,
        consent_asked=asked,
        set_aside=unsent.set_aside,
        emergency_number=config.emergency_number,
        server_placeholder=config.server_is_placeholder,
    )

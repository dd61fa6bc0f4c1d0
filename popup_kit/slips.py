"""A visit's printouts: the kit's own data turned into ``printouts`` input, rendered,
saved and sent to the printer. Used by the CLI and the UI alike; no UI here.
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
    from printouts.payload import load_or_create_kit_key

    return load_or_create_kit_key(config.data_dir, config.kit_id)


def visit_url(config: KitConfig, code: str, key: KitKey | None = None) -> str:
    """The signed ``BASE/r/CODE?s=SIG`` address the QR carries."""
    from printouts.payload import slip_url

    return slip_url(config.server_base_url, code, key or kit_key(config))


def slip_data(config: KitConfig, visit: VisitRecord, key: KitKey | None = None) -> SlipData:
    from printouts.render import SlipData

    language = visit.language
    return SlipData(
        code=visit.code,
        url=visit_url(config, visit.code, key),
        level=visit.triage,
        language=language,
        booth_name=config.booth_name,
        event=config.event,
        visit_date=visit.created_at.astimezone().date(),
        reasons=[rule.reason_in(language) for rule in visit.rules],
        rule_ids=visit.rule_ids,
        emergency_number=config.emergency_number,
        consent=dict(visit.consent),
        consent_context=config.consent_context(),
        ruleset_version=visit.ruleset_version,
        consent_version=visit.consent_version,
    )


def render_visit(
    config: KitConfig, visit: VisitRecord, fmt: str | None = None, kind: Kind = "slip"
) -> Printout:
    """The visit's slip (the emergency slip for an emergency) or its consent copy."""
    from printouts.printing import slip_filename
    from printouts.render import render_consent_copy, render_visit_slip

    fmt = fmt or config.slip_format
    data = slip_data(config, visit)
    if kind == "consent":
        pdf, made = render_consent_copy(data, fmt), "consent"
    else:
        pdf = render_visit_slip(data, fmt)
        made = "emergency" if visit.triage == "emergency" else "slip"
    return Printout(pdf, made, fmt, slip_filename(visit.code, fmt, made))


def print_visit(
    config: KitConfig, visit: VisitRecord, fmt: str | None = None, kind: Kind = "slip"
) -> PrintResult:
    """Save the printout where the volunteer can find it, then send it to the printer."""
    from printouts.printing import print_pdf

    made = render_visit(config, visit, fmt, kind)
    return print_pdf(made.pdf, config.printer_name, config.slips_dir, made.filename)


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
    )

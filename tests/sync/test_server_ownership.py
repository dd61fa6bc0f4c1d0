"""A referral belongs to the kit that made it: another enrolled kit that reuses its code or
its visit id, sends a consent or a withdrawal for it, in either order of arrival, changes
nothing of what the attendee's slip shows or what the centre holds. SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
import requests

from tests.sync.live_server import (
    EnrolledKit,
    LiveServer,
    PlainCodes,
    consent_record,
    enroll_kit,
    ingest,
    run_server,
    visit_record,
    withdrawal_record,
)

CODES = PlainCodes()
CONTACT = {"name": "Maria Lopez", "phone": "+44 7700 900123"}


@pytest.fixture
def centre(db_url: str) -> Iterator[LiveServer]:
    with run_server(db_url, emergency_number="112", code_rules=CODES) as live:
        yield live


def page(server: LiveServer, kit: EnrolledKit, code: str) -> str:
    """The attendee's page, opened from the real kit's signed slip."""
    response = requests.get(
        f"{server.url}/r/{code.replace('-', '')}",
        params={"s": CODES.sign(code, kit.slip_key)},
        timeout=10,
    )
    assert response.status_code == 200
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


def urgent_advice() -> str:
    return "A clinician needs to talk to you today or tomorrow."


def send(server: LiveServer, kit: EnrolledKit, records: list[dict[str, object]]) -> list[str]:
    answer = ingest(server, kit, records)
    assert answer.status_code == 200, answer.text
    return [r["status"] for r in answer.json()["results"]]


def real_referral(server: LiveServer, kit: EnrolledKit, code: str) -> str:
    visit = visit_record(kit.kit_id, code=code, triage="urgent", contact=CONTACT)
    visit_id = str(visit["body"]["visit_id"])  # type: ignore[index]
    assert send(server, kit, [visit, consent_record(kit.kit_id, visit_id)]) == ["accepted"] * 2
    return visit_id


@pytest.mark.parametrize("order", ["owner_first", "intruder_first"])
def test_reused_code_never_changes_the_owners_slip(centre: LiveServer, order: str) -> None:
    owner, intruder = enroll_kit(centre), enroll_kit(centre)
    code = CODES.new_code()
    fake = visit_record(intruder.kit_id, code=code, triage="self_care", version=9)
    fake_id = str(fake["body"]["visit_id"])  # type: ignore[index]
    fakes = [fake, consent_record(intruder.kit_id, fake_id)]
    if order == "intruder_first":
        send(centre, intruder, fakes)
        real_referral(centre, owner, code)
    else:
        real_referral(centre, owner, code)
        send(centre, intruder, fakes)
    text = page(centre, owner, code)
    assert urgent_advice() in text
    assert "Your back pain can be looked after at home." not in text


@pytest.mark.parametrize("order", ["owner_first", "intruder_first"])
def test_reused_visit_id_consent_and_withdrawal_touch_only_the_sender(
    centre: LiveServer, order: str
) -> None:
    owner, intruder = enroll_kit(centre), enroll_kit(centre)
    code = CODES.new_code()
    visit = visit_record(owner.kit_id, code=code, triage="urgent", contact=CONTACT)
    visit_id = str(visit["body"]["visit_id"])  # type: ignore[index]
    attack = [
        visit_record(intruder.kit_id, visit_id=visit_id, code=CODES.new_code(), version=5),
        consent_record(intruder.kit_id, visit_id, c2=False),  # the consent flip
        withdrawal_record(intruder.kit_id, visit_id),  # the forced withdrawal
    ]
    real = [visit, consent_record(owner.kit_id, visit_id)]
    if order == "intruder_first":
        send(centre, intruder, attack)
        send(centre, owner, real)
    else:
        send(centre, owner, real)
        send(centre, intruder, attack)
    assert urgent_advice() in page(centre, owner, code)
    held = centre.store.record_body(str(visit["record_id"]))
    assert held is not None and held.get("contact") == CONTACT  # not scrubbed

    # The owner's own withdrawal still works, after the intruder's.
    send(centre, owner, [withdrawal_record(owner.kit_id, visit_id)])
    after = page(centre, owner, code)
    assert urgent_advice() not in after and "Your consent is withdrawn" in after
    scrubbed = centre.store.record_body(str(visit["record_id"]))
    assert scrubbed is not None and "contact" not in scrubbed


def test_an_intruders_signature_does_not_open_the_owners_referral(centre: LiveServer) -> None:
    owner, intruder = enroll_kit(centre), enroll_kit(centre)
    code = CODES.new_code()
    real_referral(centre, owner, code)
    # A slip for the same code signed with the intruder's key shows nothing of the owner's.
    text = page(centre, intruder, code)
    assert urgent_advice() not in text
    assert "upload your referral soon" in text

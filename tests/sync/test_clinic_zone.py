"""The clinicians' pages show every time in the clinic's zone (here New York, never UTC),
labelled with it; the day filter is the clinic's day; a time typed in the form is the
clinic's local time; what is stored stays UTC."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from sync.server import worklist as wl
from tests.sync.clinic_support import (
    NOW,
    PASSWORD,
    Clinic,
    page_csrf,
    referral_records,
    run_clinic,
    send,
    sign_in,
)
from tests.sync.live_server import enroll_kit

ZONE = "America/New_York"  # NOW, 2026-11-23 12:00 UTC, is 07:00 EST there


@pytest.fixture
def clinic(sqlite_url: str) -> Iterator[Clinic]:
    with run_clinic(sqlite_url, clinic_timezone=ZONE) as running:
        running.accounts.add_user("dana", "clinician", PASSWORD)
        yield running


def test_worklist_times_are_the_clinics_and_labelled(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    # 2026-11-23 03:00 UTC is still 22:00 on the 22nd in New York.
    late = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    hour_ago = NOW - timedelta(hours=1)
    send(clinic, kit, referral_records(kit.kit_id, "URGZ-0000-0001", level="urgent", visit_at=late))
    send(clinic, kit, referral_records(kit.kit_id, "RTNZ-0000-0002", visit_at=hour_ago))
    web = sign_in(clinic, "dana")
    data = web.get(clinic.url + "/worklist.json", timeout=10).json()
    assert data["now"] == "2026-11-23 07:00 EST"
    urgent = next(r for r in data["rows"] if r["code"] == "URGZ-0000-0001")
    assert urgent["deadline"] == "2026-11-24T03:00:00.000000Z"  # the data stays UTC
    assert urgent["deadline_shown"] == "2026-11-23 22:00 EST"

    page = web.get(clinic.url + "/", timeout=10).text
    assert "Times are America/New_York time." in page
    assert "Day (America/New_York)" in page
    assert "2026-11-23 22:00 EST" in page and "UTC" not in page
    assert "<option>2026-11-22</option>" in page  # the urgent visit's day there

    def codes(day: str) -> set[str]:
        rows = web.get(clinic.url + "/worklist.json", params={"day": day}, timeout=10)
        return {r["code"] for r in rows.json()["rows"]}

    assert codes("2026-11-22") == {"URGZ-0000-0001"}
    assert codes("2026-11-23") == {"RTNZ-0000-0002"}


def test_a_typed_time_is_the_clinics_and_stored_in_utc(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    send(clinic, kit, referral_records(kit.kit_id, "CALZ-0000-0001", level="urgent"))
    web = sign_in(clinic, "dana")
    token = page_csrf(clinic, web)
    page = clinic.url + f"/r/{kit.kit_id}/CALZ-0000-0001"
    reached = web.post(page + "/attempt", data={"csrf": token, "result": "reached"}, timeout=10)
    assert "America/New_York time; escalations only" in reached.text
    # 06:50 in New York is 11:50 UTC: ten minutes ago, so not refused as a future time.
    done = web.post(
        page + "/decision",
        data={
            "csrf": token,
            "decision": "urgent_in_person",
            "escalation_arranged_at": "2026-11-23T06:50",
        },
        timeout=10,
    )
    assert "Urgent in-person review, arranged 2026-11-23 06:50 EST" in done.text
    assert "Times are America/New_York time." in done.text and "UTC" not in done.text
    detail = wl.referral(clinic.live.store, wl.Deadlines(), kit.kit_id, "CALZ-0000-0001")
    assert detail is not None
    assert detail.row.state.escalation_arranged_at == datetime(2026, 11, 23, 11, 50, tzinfo=UTC)
    with clinic.live.store.engine.connect() as conn:
        (data,) = conn.execute(
            text("SELECT data FROM referral_event WHERE kind = 'decision'")
        ).one()
    assert '"escalation_arranged_at": "2026-11-23T11:50:00.000000Z"' in data


def test_a_time_in_the_future_there_is_still_refused(clinic: Clinic) -> None:
    kit = enroll_kit(clinic.live)
    send(clinic, kit, referral_records(kit.kit_id, "FUTZ-0000-0001", level="urgent"))
    web = sign_in(clinic, "dana")
    token = page_csrf(clinic, web)
    page = clinic.url + f"/r/{kit.kit_id}/FUTZ-0000-0001"
    # 11:50 read as UTC would be ten minutes ago; in New York it is almost five hours ahead.
    answer = web.post(
        page + "/decision",
        data={
            "csrf": token,
            "decision": "specialist",
            "escalation_arranged_at": "2026-11-23T11:50",
        },
        timeout=10,
    )
    assert "cannot be in the future" in answer.text
    with clinic.live.store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM referral_event")).scalar() == 0

"""The attendee's call page, served by the real server on SQLite and PostgreSQL: call slots
that cannot be overbooked, held then booked, changed and cancelled; call-back requests;
what each level may book; signatures and other attendees' bookings; the .ics; times in the
clinic's zone across daylight-saving changes; withdrawal erases what was given here."""

from __future__ import annotations

import dataclasses
import html
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from sync.server.booking_pages import TEXTS
from sync.server.bookings import Bookings, Slot, by_priority
from sync.server.worklist import Deadlines, worklist
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
EN, ES = TEXTS["en"], TEXTS["es"]
LONDON = ZoneInfo("Europe/London")
CONTACT = {"name": "Zebulon Quixano", "phone": "+44 7700 900123"}
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class SetClock:
    """The server's clock, moved by the test (times stay exact, reads do not move it)."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> SetClock:
    return SetClock()


@pytest.fixture
def centre(db_url: str, clock: SetClock) -> Iterator[LiveServer]:
    with run_server(
        db_url,
        emergency_number="112",
        code_rules=CODES,
        clock=clock,
        landing_rate=(100_000, 1.0),
        code_attempts=(100, 3600.0),
        booking_hold_minutes=5,
    ) as live:
        yield live


def _calls(server: LiveServer) -> Bookings:
    return Bookings(server.store.engine, clock=server.store.clock)


def _slot(server: LiveServer, start: datetime, *, capacity: int = 1, minutes: int = 15) -> Slot:
    return _calls(server).add_slots(start, minutes, capacity, weeks=1, zone=LONDON)[0]


def _attendee(
    server: LiveServer,
    kit: EnrolledKit,
    level: str = "routine",
    *,
    contact: dict[str, str] | None = CONTACT,
    language: str = "en",
) -> str:
    code = CODES.new_code()
    visit = visit_record(kit.kit_id, code=code, triage=level, contact=contact, language=language)
    consent = consent_record(kit.kit_id, visit["body"]["visit_id"])
    answer = ingest(server, kit, [consent, visit])
    assert [r["status"] for r in answer.json()["results"]] == ["accepted", "accepted"]
    return code


def _sig(kit: EnrolledKit, code: str) -> str:
    return CODES.sign(code, kit.slip_key)


def _url(server: LiveServer, code: str, tail: str = "/call") -> str:
    return f"{server.url}/r/{code.replace('-', '')}{tail}"


def _page(server: LiveServer, kit: EnrolledKit, code: str, lang: str = "en") -> requests.Response:
    params = {"s": _sig(kit, code), "lang": lang}
    return requests.get(_url(server, code), params=params, timeout=10)


def _post(
    server: LiveServer,
    code: str,
    sig: str,
    action: str,
    session: requests.Session | None = None,
    **fields: str,
) -> requests.Response:
    form = {"s": sig, "lang": "en", "action": action, **fields}
    poster = session or requests
    return poster.post(_url(server, code), data=form, timeout=30, allow_redirects=False)


def _book(server: LiveServer, kit: EnrolledKit, code: str, slot: Slot, **fields: str) -> None:
    sig = _sig(kit, code)
    assert _post(server, code, sig, "hold", slot=str(slot.slot_id)).status_code == 303
    assert _post(server, code, sig, "confirm", **fields).status_code == 303


def _text(response: requests.Response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


def _rows(server: LiveServer, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with server.store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params).all()]


def _booked(server: LiveServer, slot: Slot) -> int:
    return int(_rows(server, "SELECT booked FROM call_slot WHERE id = :i", i=slot.slot_id)[0][0])


def _slot_buttons(response: requests.Response) -> list[str]:
    return re.findall(r'name="slot" value="(\d+)"', response.text)


def _safe_page(response: requests.Response) -> None:
    """Every call page keeps the warning signs and the number, and carries no script."""
    assert '<section class="warn">' in response.text and "112" in _text(response)
    assert not re.search(r"<script\b", response.text)


def test_fifty_attendees_booking_the_last_place_get_one_booking(
    centre: LiveServer, clock: SetClock
) -> None:
    kit = enroll_kit(centre)
    slot = _slot(centre, START + timedelta(days=2), capacity=2)
    _book(centre, kit, _attendee(centre, kit), slot)
    codes = [_attendee(centre, kit) for _ in range(50)]
    barrier = threading.Barrier(50)
    results: dict[str, tuple[int, int]] = {}

    def attendee(code: str) -> None:
        with requests.Session() as session:
            sig = _sig(kit, code)
            barrier.wait()
            held = _post(centre, code, sig, "hold", session, slot=str(slot.slot_id))
            confirmed = _post(centre, code, sig, "confirm", session)
            results[code] = (held.status_code, confirmed.status_code)

    threads = [threading.Thread(target=attendee, args=(c,)) for c in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 50
    winners = [c for c, (held, confirmed) in results.items() if held == 303]
    assert len(winners) == 1
    assert results[winners[0]] == (303, 303)
    assert sorted(set(results.values())) == [(303, 303), (409, 409)]
    assert _booked(centre, slot) == 2
    booked = _rows(
        centre,
        "SELECT referral_code FROM call_booking WHERE slot_id = :i AND status = 'booked'",
        i=slot.slot_id,
    )
    assert len(booked) == 2 and (winners[0],) in booked
    assert _rows(centre, "SELECT COUNT(*) FROM call_booking WHERE status = 'held'") == [(0,)]
    # The losers' pages offer no slot now; the winner's shows the booking.
    assert _slot_buttons(_page(centre, kit, codes[0] if codes[0] != winners[0] else codes[1])) == []
    assert EN["booked"] in _page(centre, kit, winners[0]).text


def test_the_database_refuses_an_overbooked_slot(centre: LiveServer) -> None:
    slot = _slot(centre, START + timedelta(days=1), capacity=1)
    with pytest.raises(IntegrityError), centre.store.engine.begin() as conn:
        conn.execute(text("UPDATE call_slot SET booked = 2 WHERE id = :i"), {"i": slot.slot_id})
    assert _booked(centre, slot) == 0


def test_book_change_and_cancel_from_the_same_page(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = _attendee(centre, kit)
    first = _slot(centre, datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    second = _slot(centre, datetime(2026, 11, 25, 14, 30, tzinfo=UTC))
    page = _page(centre, kit, code)
    assert page.status_code == 200 and _slot_buttons(page) == [
        str(first.slot_id),
        str(second.slot_id),
    ]
    assert "Tuesday 24 November, 09:00 GMT" in _text(page)
    assert "Times are Europe/London time." in _text(page)
    _safe_page(page)

    sig = _sig(kit, code)
    held = _post(centre, code, sig, "hold", slot=str(first.slot_id))
    assert held.status_code == 303
    shown = _text(_page(centre, kit, code))
    assert "This time is held for you until 08:05 GMT" in shown
    assert _booked(centre, first) == 1
    assert _post(centre, code, sig, "confirm").status_code == 303
    page = _page(centre, kit, code)
    assert EN["booked"] in page.text and "Tuesday 24 November, 09:00 GMT" in _text(page)
    landing = requests.get(_url(centre, code, ""), params={"s": sig}, timeout=10)
    assert "Your call: Tuesday 24 November, 09:00 GMT" in _text(landing)

    # A change: the new time is held while the booked one stays, until confirmed.
    assert _post(centre, code, sig, "hold", slot=str(second.slot_id)).status_code == 303
    assert (_booked(centre, first), _booked(centre, second)) == (1, 1)
    assert _post(centre, code, sig, "confirm").status_code == 303
    assert (_booked(centre, first), _booked(centre, second)) == (0, 1)
    assert "Wednesday 25 November, 14:30 GMT" in _text(_page(centre, kit, code))

    assert _post(centre, code, sig, "cancel").status_code == 303
    assert (_booked(centre, first), _booked(centre, second)) == (0, 0)
    after = _page(centre, kit, code)
    assert EN["booked"] not in after.text and len(_slot_buttons(after)) == 2
    assert _rows(centre, "SELECT status FROM call_booking ORDER BY id") == [
        ("cancelled",),
        ("cancelled",),
    ]


def test_a_hold_is_released_after_its_minutes(centre: LiveServer, clock: SetClock) -> None:
    kit = enroll_kit(centre)
    slow, quick = _attendee(centre, kit), _attendee(centre, kit)
    slot = _slot(centre, START + timedelta(hours=30))
    assert _post(centre, slow, _sig(kit, slow), "hold", slot=str(slot.slot_id)).status_code == 303
    assert _slot_buttons(_page(centre, kit, quick)) == []
    clock.now += timedelta(minutes=5)
    assert _slot_buttons(_page(centre, kit, quick)) == [str(slot.slot_id)]
    late = _post(centre, slow, _sig(kit, slow), "confirm")
    assert late.status_code == 409 and EN["expired"] in _text(late)
    _book(centre, kit, quick, slot)
    assert _booked(centre, slot) == 1
    assert _rows(centre, "SELECT referral_code, status FROM call_booking ORDER BY id") == [
        (slow, "expired"),
        (quick, "booked"),
    ]


def test_weekly_slot_keeps_its_local_time_across_daylight_saving(
    centre: LiveServer, clock: SetClock
) -> None:
    # 09:00 in London on the Tuesdays either side of both changes of 2027.
    spring = _calls(centre).add_slots(
        datetime(2027, 3, 23, 9, 0, tzinfo=UTC), 20, 3, weeks=2, zone=LONDON
    )
    autumn = _calls(centre).add_slots(
        datetime(2027, 10, 26, 9, 0, tzinfo=ZoneInfo("Europe/London")), 20, 3, weeks=2, zone=LONDON
    )
    assert [s.starts_at for s in spring] == [
        datetime(2027, 3, 23, 9, 0, tzinfo=UTC),
        datetime(2027, 3, 30, 8, 0, tzinfo=UTC),
    ]
    assert [s.starts_at for s in autumn] == [
        datetime(2027, 10, 26, 8, 0, tzinfo=UTC),
        datetime(2027, 11, 2, 9, 0, tzinfo=UTC),
    ]
    kit = enroll_kit(centre)
    code = _attendee(centre, kit)
    clock.now = datetime(2027, 3, 22, 12, 0, tzinfo=UTC)
    shown = _text(_page(centre, kit, code))
    assert "Tuesday 23 March, 09:00 GMT" in shown
    assert "Tuesday 30 March, 09:00 BST" in shown
    clock.now = datetime(2027, 10, 25, 12, 0, tzinfo=UTC)
    shown = _text(_page(centre, kit, code))
    assert "Tuesday 26 October, 09:00 BST" in shown
    assert "Tuesday 2 November, 09:00 GMT" in shown
    _book(centre, kit, code, autumn[1])
    calendar = icalendar.Calendar.from_ical(
        requests.get(_url(centre, code, "/call.ics"), params={"s": _sig(kit, code)}).content
    )
    (event,) = calendar.walk("VEVENT")
    assert event.decoded("dtstart") == datetime(2027, 11, 2, 9, 0, tzinfo=UTC)


def test_urgent_never_takes_a_routine_slot(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = _attendee(centre, kit, "urgent")
    later = _slot(centre, START + timedelta(hours=25))
    page = _page(centre, kit, code)
    assert _slot_buttons(page) == []
    assert EN["callback_title"] in _text(page)
    # A form naming the routine slot is refused by the slot's own bound.
    sig = _sig(kit, code)
    refused = _post(centre, code, sig, "hold", slot=str(later.slot_id))
    assert refused.status_code == 409 and _booked(centre, later) == 0
    assert _rows(centre, "SELECT COUNT(*) FROM call_booking") == [(0,)]

    # No slot within 24 hours: a call-back by now + 24 h, and what to do if none comes.
    assert _post(centre, code, sig, "callback").status_code == 303
    (deadline,) = _rows(centre, "SELECT deadline FROM callback_request")[0]
    assert deadline == "2026-11-24T08:00:00.000000Z"
    shown = _text(_page(centre, kit, code))
    assert (
        "If nobody has called you by Tuesday 24 November, 08:00 GMT, go to urgent care or the "
        "emergency department today." in shown
    )


def test_urgent_gets_a_slot_within_24_hours_and_no_call_back_then(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = _attendee(centre, kit, "urgent")
    soon = _slot(centre, START + timedelta(hours=3))
    _slot(centre, START + timedelta(hours=30))
    page = _page(centre, kit, code)
    assert _slot_buttons(page) == [str(soon.slot_id)]
    assert EN["callback_send"] not in _text(page)
    sig = _sig(kit, code)
    assert _post(centre, code, sig, "callback").status_code == 403
    _book(centre, kit, code, soon)
    shown = _text(_page(centre, kit, code))
    assert "If nobody has called you by Monday 23 November, 11:15 GMT" in shown


def test_emergency_cannot_book(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = _attendee(centre, kit, "emergency")
    slot = _slot(centre, START + timedelta(hours=2))
    page = _page(centre, kit, code)
    assert page.status_code == 200
    assert '<a class="call" href="tel:112">' in page.text
    assert "<form" not in page.text and _slot_buttons(page) == []
    # The instruction comes before the number to call.
    assert page.text.index('class="box em"') < page.text.index("tel:112")
    _safe_page(page)
    sig = _sig(kit, code)
    for action in ("hold", "callback", "confirm"):
        answer = _post(centre, code, sig, action, slot=str(slot.slot_id))
        assert answer.status_code == 403 and "tel:112" in answer.text
    assert _booked(centre, slot) == 0
    assert _rows(centre, "SELECT COUNT(*) FROM callback_request") == [(0,)]
    landing = requests.get(_url(centre, code, ""), params={"s": sig}, timeout=10)
    assert 'href="tel:112"' in landing.text and "/call?" not in landing.text


def test_a_forged_signature_cannot_book_or_cancel(centre: LiveServer) -> None:
    kit, other = enroll_kit(centre), enroll_kit(centre)
    code = _attendee(centre, kit)
    slot = _slot(centre, START + timedelta(days=1), capacity=3)
    good = _sig(kit, code)
    forged = ["AAAAAAAAAA", good[:-1] + ("Q" if good[-1] != "Q" else "R"), good.lower(), ""]
    for sig in forged:
        for action in ("hold", "callback"):
            answer = _post(centre, code, sig, action, slot=str(slot.slot_id), window="x")
            assert answer.status_code == 404, (sig, action)
    assert _booked(centre, slot) == 0
    assert _rows(centre, "SELECT COUNT(*) FROM callback_request") == [(0,)]

    _book(centre, kit, code, slot)
    for sig in forged:
        assert _post(centre, code, sig, "cancel").status_code == 404
        ics = requests.get(_url(centre, code, "/call.ics"), params={"s": sig}, timeout=10)
        assert ics.status_code == 404 and "VCALENDAR" not in ics.text
    assert _booked(centre, slot) == 1
    assert requests.get(_url(centre, code), params={"s": "AAAAAAAAAA"}).status_code == 404
    # Another kit's key signs another slip with the same code: it cancels nothing of this one.
    assert _post(centre, code, _sig(other, code), "cancel").status_code == 303
    assert _rows(centre, "SELECT status FROM call_booking") == [("booked",)]


def test_one_attendee_never_sees_another_attendees_booking(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    mine, theirs = _attendee(centre, kit), _attendee(centre, kit, contact=None)
    slot = _slot(centre, datetime(2026, 11, 24, 9, 0, tzinfo=UTC), capacity=2)
    _book(centre, kit, theirs, slot, phone="+44 20 7946 0999")
    (ref,) = _rows(centre, "SELECT ref FROM call_booking")[0]
    page = _page(centre, kit, mine)
    assert EN["booked"] not in page.text and ref not in page.text
    assert "7946" not in page.text and theirs not in page.text
    # Their slot still shows to me as a free time (one place left), nothing more.
    assert _slot_buttons(page) == [str(slot.slot_id)]
    ics = requests.get(_url(centre, mine, "/call.ics"), params={"s": _sig(kit, mine)})
    assert ics.status_code == 404
    assert _post(centre, mine, _sig(kit, mine), "cancel").status_code == 303
    assert _rows(centre, "SELECT status FROM call_booking") == [("booked",)]
    # The same code under another kit is another slip.
    other = enroll_kit(centre)
    visit = visit_record(other.kit_id, code=theirs, triage="routine", contact=CONTACT)
    ingest(centre, other, [consent_record(other.kit_id, visit["body"]["visit_id"]), visit])
    assert EN["booked"] not in _page(centre, other, theirs).text


def test_the_ics_holds_the_booked_time_and_nothing_personal(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = _attendee(centre, kit, language="es")
    slot = _slot(centre, datetime(2026, 11, 24, 9, 30, tzinfo=UTC), minutes=20)
    _book(centre, kit, code, slot)
    answer = requests.get(_url(centre, code, "/call.ics"), params={"s": _sig(kit, code)})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/calendar")
    assert "attachment" in answer.headers["content-disposition"]
    calendar = icalendar.Calendar.from_ical(answer.content)
    (event,) = calendar.walk("VEVENT")
    assert event.decoded("dtstart") == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert event.decoded("dtend") == datetime(2026, 11, 24, 9, 50, tzinfo=UTC)
    assert str(event["summary"]) == ES["ics_summary"]
    (ref,) = _rows(centre, "SELECT ref FROM call_booking")[0]
    assert str(event["uid"]) == f"{ref}@popup-kit"
    for private in (code, code.replace("-", ""), CONTACT["name"], "7700", _sig(kit, code)):
        assert private not in answer.text


def test_phone_asked_only_without_a_booth_contact_and_erased_on_withdrawal(
    centre: LiveServer,
) -> None:
    kit = enroll_kit(centre)
    with_contact, without = _attendee(centre, kit), _attendee(centre, kit, contact=None)
    slot = _slot(centre, START + timedelta(days=1), capacity=2)
    for code in (with_contact, without):
        assert (
            _post(centre, code, _sig(kit, code), "hold", slot=str(slot.slot_id)).status_code == 303
        )
    assert 'name="phone"' not in _page(centre, kit, with_contact).text
    page = _page(centre, kit, without)
    assert 'name="phone"' in page.text and EN["phone_why"] in _text(page)
    sig = _sig(kit, without)
    for bad in ("", "12345", "call me", "+44 " + "1" * 30):
        assert _post(centre, without, sig, "confirm", phone=bad).status_code == 422
    assert _post(centre, without, sig, "confirm", phone="+44 20 7946 0321").status_code == 303
    assert _rows(centre, "SELECT phone FROM call_booking WHERE referral_code = :c", c=without) == [
        ("+44 20 7946 0321",)
    ]

    withdrawn = requests.post(
        _url(centre, without, "/withdraw"), data={"s": sig, "confirm": "yes"}, timeout=10
    )
    assert withdrawn.status_code == 200
    assert _rows(
        centre, "SELECT phone, status FROM call_booking WHERE referral_code = :c", c=without
    ) == [(None, "cancelled")]
    assert _booked(centre, slot) == 1  # only the other attendee's hold
    after = _page(centre, kit, without)
    assert EN["booked"] not in after.text and "<form" not in after.text
    if centre.db_url.startswith("sqlite"):
        folder = Path(centre.db_url.removeprefix("sqlite:///")).parent
        stored = b"".join(p.read_bytes() for p in folder.glob("server.sqlite3*"))
        assert b"7946 0321" not in stored


def test_call_back_windows_for_routine_and_self_care(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    routine, care = _attendee(centre, kit), _attendee(centre, kit, "self_care")
    page = _page(centre, kit, care)
    assert EN["callback_optional"] in _text(page) and _slot_buttons(page) == []
    windows = re.findall(r'<option value="([^"]+)">', page.text)
    # Monday 08:00 in London: this morning is still open; a week of windows.
    assert windows[0] == "2026-11-23|morning" and windows[-1] == "2026-11-30|evening"
    sig = _sig(kit, care)
    assert _post(centre, care, sig, "hold", slot="1").status_code == 403
    for bad in ("2026-12-10|morning", "2026-11-22|evening", "2026-11-24|night", "x"):
        assert _post(centre, care, sig, "callback", window=bad).status_code == 422
    assert _post(centre, care, sig, "callback", window="2026-11-24|afternoon").status_code == 303
    shown = _text(_page(centre, kit, care))
    assert "You asked for a call-back between Tuesday 24 November, 12:00 GMT and 17:00 GMT" in shown
    assert _rows(centre, "SELECT window_start, window_end, deadline FROM callback_request") == [
        (
            "2026-11-24T12:00:00.000000Z",
            "2026-11-24T17:00:00.000000Z",
            "2026-11-24T17:00:00.000000Z",
        )
    ]
    assert _post(centre, care, sig, "cancel_callback").status_code == 303
    assert EN["callback_send"] in _text(_page(centre, kit, care))
    assert EN["callback_send"] in _text(_page(centre, kit, routine))


def test_call_back_before_the_visit_arrives_is_held_then_placed_by_level(
    centre: LiveServer,
) -> None:
    kit = enroll_kit(centre)
    early, later = CODES.new_code(), _attendee(centre, kit, "routine")
    page = _page(centre, kit, early)
    assert EN["callback_pending"] in _text(page) and _slot_buttons(page) == []
    sig = _sig(kit, early)
    # The number is optional here: the booth may have recorded one.
    assert _post(centre, early, sig, "callback", window="2026-11-25|morning").status_code == 303
    assert (
        _post(centre, later, _sig(kit, later), "callback", window="2026-11-24|morning").status_code
        == 303
    )
    assert "You asked for a call-back" in _text(_page(centre, kit, early))
    calls = _calls(centre)

    def level(kit_id: str, code: str) -> str | None:
        found = centre.store.referral(code, kit_id)
        return None if found is None else found.level

    assert [r[2] for r in by_priority(calls.open_callbacks(), level)] == [later, early]
    visit = visit_record(kit.kit_id, code=early, triage="urgent", contact=CONTACT)
    ingest(centre, kit, [consent_record(kit.kit_id, visit["body"]["visit_id"]), visit])
    placed = by_priority(calls.open_callbacks(), level)
    assert [(r[0], r[2]) for r in placed] == [("urgent", early), ("routine", later)]


@pytest.mark.parametrize("refusal", ["before", "with", "after"])
def test_a_held_call_back_is_dropped_and_its_phone_erased_when_c2_is_refused(
    centre: LiveServer, refusal: str
) -> None:
    kit = enroll_kit(centre)
    early, other = CODES.new_code(), CODES.new_code()
    for code in (early, other):
        answer = _post(
            centre,
            code,
            _sig(kit, code),
            "callback",
            window="2026-11-25|morning",
            phone=f"+44 20 7946 {'0577' if code == early else '0688'}",
        )
        assert answer.status_code == 303
    visit = visit_record(kit.kit_id, code=early, triage="urgent", contact=CONTACT)
    visit_id = visit["body"]["visit_id"]
    refused = consent_record(kit.kit_id, visit_id, c2=False)
    if refusal == "before":  # the refusing consent held first, the visit later
        ingest(centre, kit, [refused]).raise_for_status()
        ingest(centre, kit, [visit]).raise_for_status()
    elif refusal == "with":
        ingest(centre, kit, [refused, visit]).raise_for_status()
    else:  # a visit shared at first, then C2 withdrawn by a consent change
        granted = consent_record(kit.kit_id, visit_id)
        ingest(centre, kit, [granted, visit]).raise_for_status()
        assert {cb[1] for cb in _calls(centre).open_callbacks()} == {early, other}
        ingest(centre, kit, [refused]).raise_for_status()
    later = visit_record(kit.kit_id, code=other, triage="routine", contact=None)
    ingest(centre, kit, [consent_record(kit.kit_id, later["body"]["visit_id"]), later])
    assert {cb[1] for cb in _calls(centre).open_callbacks()} == {other}
    listed = worklist(centre.store, Deadlines())
    assert [r.code for r in listed] == [other]
    assert _rows(
        centre,
        "SELECT phone, cancelled_at IS NOT NULL FROM callback_request WHERE referral_code = :c",
        c=early,
    ) == [(None, True)]
    assert _rows(
        centre, "SELECT phone FROM callback_request WHERE referral_code = :c", c=other
    ) == [("+44 20 7946 0688",)]
    assert "You asked for a call-back" not in _text(_page(centre, kit, early))
    if centre.db_url.startswith("sqlite"):
        folder = Path(centre.db_url.removeprefix("sqlite:///")).parent
        stored = b"".join(p.read_bytes() for p in folder.glob("server.sqlite3*"))
        assert b"7946 0577" not in stored and b"7946 0688" in stored
    else:
        with centre.store.engine.connect() as conn:
            dump = " ".join(
                str(row)
                for table in ("callback_request", "call_booking", "record")
                for row in conn.execute(text(f"SELECT * FROM {table}"))
            )
        assert "7946 0577" not in dump and "7946 0688" in dump


def test_pages_in_the_slips_language(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = _attendee(centre, kit, language="es")
    _slot(centre, datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    page = _page(centre, kit, code)
    assert '<html lang="es">' in page.text
    shown = _text(page)
    assert ES["choose"] in shown and "martes 24 de noviembre, 09:00 GMT" in shown
    assert "Las horas son de Europe/London." in shown
    landing = requests.get(_url(centre, code, ""), params={"s": _sig(kit, code)})
    assert ES["link"] in _text(landing)


def test_the_kits_withdrawal_record_cancels_and_erases_too(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = CODES.new_code()
    visit = visit_record(kit.kit_id, code=code, triage="routine", contact=None)
    visit_id = visit["body"]["visit_id"]
    ingest(centre, kit, [consent_record(kit.kit_id, visit_id), visit])
    slot = _slot(centre, START + timedelta(days=1))
    _book(centre, kit, code, slot, phone="+44 20 7946 0456")
    sig = _sig(kit, code)
    asked = _post(centre, code, sig, "callback", window="2026-11-24|morning", phone="020 7946 0457")
    assert asked.status_code == 303
    assert _rows(centre, "SELECT phone FROM callback_request") == [("020 7946 0457",)]
    answer = ingest(centre, kit, [withdrawal_record(kit.kit_id, visit_id)])
    assert answer.json()["results"][0]["status"] == "accepted"
    assert _rows(centre, "SELECT phone, status FROM call_booking") == [(None, "cancelled")]
    assert _rows(centre, "SELECT phone, cancelled_at IS NOT NULL FROM callback_request") == [
        (None, True)
    ]
    assert _booked(centre, slot) == 0
    if centre.db_url.startswith("sqlite"):
        folder = Path(centre.db_url.removeprefix("sqlite:///")).parent
        stored = b"".join(p.read_bytes() for p in folder.glob("server.sqlite3*"))
        assert b"7946 0456" not in stored and b"7946 0457" not in stored


def test_one_slip_pressing_twice_at_once_holds_one_place(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = _attendee(centre, kit)
    slot = _slot(centre, START + timedelta(days=1), capacity=5)
    sig = _sig(kit, code)
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def press(action: str, **fields: str) -> None:
        barrier.wait()
        statuses.append(_post(centre, code, sig, action, **fields).status_code)

    for action, fields in (("hold", {"slot": str(slot.slot_id)}), ("confirm", {})):
        threads = [threading.Thread(target=press, args=(action,), kwargs=fields) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(statuses) == 20 and all(s < 500 for s in statuses), statuses
    assert _booked(centre, slot) == 1
    assert _rows(centre, "SELECT status FROM call_booking WHERE status <> 'expired'") == [
        ("booked",)
    ]
    statuses.clear()
    threads = [
        threading.Thread(target=press, args=("callback",), kwargs={"window": "2026-11-24|morning"})
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert statuses == [303] * 10
    assert _rows(centre, "SELECT COUNT(*) FROM callback_request WHERE cancelled_at IS NULL") == [
        (1,)
    ]


def test_after_the_call_the_page_says_what_was_arranged(
    centre: LiveServer, clock: SetClock
) -> None:
    from sync.server import worklist

    kit = enroll_kit(centre)
    code, other = _attendee(centre, kit, "urgent"), _attendee(centre, kit, "urgent")
    assert EN["arranged"] not in _text(_page(centre, kit, code))
    worklist.record_event(centre.store, kit.kit_id, code, "attempt", "dr-a", {"result": "reached"})
    arranged_at = START - timedelta(minutes=1)
    worklist.record_event(
        centre.store,
        kit.kit_id,
        code,
        "decision",
        "dr-a",
        {
            "decision": "urgent_imaging",
            "escalation_arranged_at": arranged_at.isoformat(),
            "note": "Private clinical note 4417",
        },
    )
    shown = _text(_page(centre, kit, code))
    assert EN["arranged"] in shown
    assert "An urgent scan (Monday 23 November, 07:59 GMT)" in shown
    assert "4417" not in shown and "dr-a" not in shown
    assert EN["arranged"] not in _text(_page(centre, kit, other))


def test_after_the_decision_the_page_no_longer_waits_for_a_call() -> None:
    """Once a decision is recorded, the attendee's page says what was arranged and no
    longer tells them to go to urgent care if nobody calls, nor offers to cancel."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from sync.server import booking_pages
    from sync.server.bookings import Arranged, Callback

    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    waiting = booking_pages.CallView(
        code="ABCD-EFGH-JKLM",
        sig="x",
        language="en",
        emergency_number="999",
        zone=ZoneInfo("Europe/London"),
        now=now,
        level="urgent",
        need_phone=False,
        callback=Callback(now, now + timedelta(hours=4), now + timedelta(hours=24), now),
    )
    before = html.unescape(booking_pages.call(waiting).html)
    assert "If nobody has called you by" in before and "Cancel the call-back" in before
    decided = dataclasses.replace(
        waiting, arranged=Arranged("urgent_in_person", now + timedelta(hours=2))
    )
    after = html.unescape(booking_pages.call(decided).html)
    assert "What was arranged" in after and "urgent in-person review" in after
    assert "If nobody has called you by" not in after
    assert "Cancel the call-back" not in after and "<form" not in after


def test_the_worklist_row_shows_the_booked_call_and_drops_it_on_cancel(
    centre: LiveServer,
) -> None:
    kit = enroll_kit(centre)
    code = _attendee(centre, kit)
    slot = _slot(centre, datetime(2026, 11, 24, 9, 0, tzinfo=UTC), minutes=20)

    def row() -> Any:
        return next(r for r in worklist(centre.store, Deadlines()) if r.code == code)

    assert row().booking is None  # read once before, so a stale list would show
    _book(centre, kit, code, slot)
    booked = row()
    assert booked.booking == (slot.starts_at, slot.starts_at + timedelta(minutes=20))
    shown = booked.as_json(START, LONDON)
    assert shown["booking_shown"] == "2026-11-24 09:00 GMT to 2026-11-24 09:20 GMT"
    assert _post(centre, code, _sig(kit, code), "cancel").status_code == 303
    assert row().booking is None

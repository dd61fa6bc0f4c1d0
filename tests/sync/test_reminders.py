"""Follow-up reminders by SMS on the real server (SQLite and PostgreSQL), against the local
gateway stand-in: who gets one, at most once per window even when two runs race, retries
on 5xx and timeouts only, the slip's language, and no phone number in any log line."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from printouts.codes import new_referral_code
from printouts.payload import sign_code
from sync.server import reminders
from sync.server.settings import ServerSettings
from sync.server.sms import Gateway, e164
from sync.server.store import ServerStore, iso
from tests.support.sms_gateway import StandIn, sms_gateway
from tests.sync.clinic_support import NOW, Clinic, referral_records, run_clinic, send
from tests.sync.live_server import EnrolledKit, enroll_kit, withdrawal_record

VISIT = NOW - timedelta(hours=1)
W2 = VISIT + timedelta(days=12)  # week-2 window (days 11-17) open
PHONE = "+44 7700 900123"


@pytest.fixture
def clinic(db_url: str) -> Iterator[Clinic]:
    with run_clinic(db_url) as running:
        yield running


@pytest.fixture
def gateway() -> Iterator[StandIn]:
    with sms_gateway() as stand_in:
        yield stand_in


def _settings(clinic: Clinic, gw: StandIn, **more: Any) -> ServerSettings:
    return ServerSettings(
        database_url=clinic.live.db_url,
        sms_webhook_url=gw.url,
        sms_webhook_token="gw-token-1",
        sms_sender="Clinic",
        sms_timeout_seconds=1.0,
        **more,
    )


def _run(
    clinic: Clinic, settings: ServerSettings, at: datetime, store: ServerStore | None = None
) -> reminders.Counts:
    return reminders.run(store or clinic.live.store, settings, reminders.gateway_of(settings), at)


def _status(clinic: Clinic, code: str) -> list[tuple[str, str, int, str]]:
    with clinic.live.store.engine.connect() as conn:
        return [
            (w, s, int(a), e)
            for w, s, a, e in conn.execute(
                text(
                    'SELECT "window", status, attempts, last_error FROM followup_reminder '
                    'WHERE referral_code LIKE :c ORDER BY "window"'
                ),
                {"c": code},
            )
        ]


def _respond(clinic: Clinic, kit: EnrolledKit, code: str, window: str, at: datetime) -> None:
    with clinic.live.store.engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO followup_response (kit_id, referral_code, "window", submitted_at, '
                "answers, warning) VALUES (:k, :c, :w, :t, '{}', 0)"
            ),
            {"k": kit.kit_id, "c": code, "w": window, "t": iso(at)},
        )


def test_who_gets_a_reminder(clinic: Clinic, gateway: StandIn) -> None:
    kit = enroll_kit(clinic.live)
    records: list[dict[str, Any]] = []
    plan = {
        "due": {},
        "no-c3": {"c3": False},
        "no-c2": {"c2": False},
        "void": {"status": "void"},
        "no-phone": {"phone": None},
        "booth-withdrawn": {},
        "slip-withdrawn": {},
        "responded": {},
        "local-number": {"phone": "07700 900456"},
        "late": {"visit_at": VISIT - timedelta(days=20)},  # past week 2, before week 6
        "self-care": {"level": "self_care", "phone": "+34 612 000 222"},
        "emergency": {"level": "emergency", "phone": "+34 612 000 333"},
    }
    codes = {name: new_referral_code() for name in plan}
    for name, given in plan.items():
        options: dict[str, Any] = {"visit_at": VISIT, **given}
        records += referral_records(kit.kit_id, codes[name], **options)
    send(clinic, kit, records)
    by_code = {r["body"].get("referral_code"): r for r in records if r["record_type"] == "visit"}
    visit_id = by_code[codes["booth-withdrawn"]]["body"]["visit_id"]
    send(clinic, kit, [withdrawal_record(kit.kit_id, visit_id)])
    clinic.live.store.withdraw_by_attendee(kit.kit_id, codes["slip-withdrawn"], "en")
    _respond(clinic, kit, codes["responded"], "w2", W2 - timedelta(hours=2))
    settings = _settings(clinic, gateway)

    before = _run(clinic, settings, VISIT + timedelta(days=10, hours=23))
    assert before.as_json() == {"sent": 0, "failed": 0, "retry": 0, "skipped": 0}
    counts = _run(clinic, settings, W2)
    assert counts.as_json() == {"sent": 3, "failed": 0, "retry": 0, "skipped": 1}
    assert sorted(r.body["to"] for r in gateway.received) == [
        "+34612000222",  # self-care (no call-back asked for): still followed up
        "+34612000333",
        "+447700900123",
    ]
    sent = next(r for r in gateway.received if r.body["to"] == "+447700900123")
    assert sent.headers["Authorization"] == "Bearer gw-token-1"
    assert sent.body["sender"] == "Clinic"
    assert "back-pain check-in" in sent.body["text"]
    assert _status(clinic, codes["due"]) == [("w2", "sent", 1, "")]
    # A number without its country code is not guessed at: skipped, left to the chase list.
    assert _status(clinic, codes["local-number"]) == [("w2", "skipped", 0, "")]
    for name in plan.keys() - {"due", "local-number", "self-care", "emergency"}:
        assert _status(clinic, codes[name]) == [], name
    # Run again in the same window: nothing more.
    assert _run(clinic, settings, W2 + timedelta(days=1)).as_json()["sent"] == 0
    assert len(gateway.received) == 3


def test_one_per_window_until_the_last_and_stops_on_withdrawal(
    clinic: Clinic, gateway: StandIn
) -> None:
    kit = enroll_kit(clinic.live)
    code, other = new_referral_code(), new_referral_code()
    records = referral_records(kit.kit_id, code, visit_at=VISIT)
    records += referral_records(kit.kit_id, other, visit_at=VISIT, phone="+34 612 345 678")
    send(clinic, kit, records)
    settings = _settings(clinic, gateway)
    days = timedelta(days=1)
    for day in (12, 13, 40, 45, 78, 91, 92, 120):
        _run(clinic, settings, VISIT + day * days)
    assert [w for w, *_ in _status(clinic, other)] == ["w12", "w2", "w6"]
    assert sorted(r.body["to"] for r in gateway.received).count("+34612345678") == 3
    # ``code`` too, until it is withdrawn after its first reminder: then nothing more.
    assert [w for w, *_ in _status(clinic, code)] == ["w12", "w2", "w6"]
    third = new_referral_code()
    records = referral_records(kit.kit_id, third, visit_at=VISIT, phone="+33 6 12 34 56 78")
    send(clinic, kit, records)
    _run(clinic, settings, W2)
    visit_id = records[1]["body"]["visit_id"]
    send(clinic, kit, [withdrawal_record(kit.kit_id, visit_id)])
    _run(clinic, settings, VISIT + 40 * days)
    assert [w for w, *_ in _status(clinic, third)] == ["w2"]
    assert [r.body["to"] for r in gateway.received].count("+33612345678") == 1


def test_withdrawn_on_the_slip_page_after_a_first_reminder(
    clinic: Clinic, gateway: StandIn
) -> None:
    kit = enroll_kit(clinic.live)
    code = new_referral_code()
    send(clinic, kit, referral_records(kit.kit_id, code, visit_at=VISIT))
    settings = _settings(clinic, gateway)
    assert _run(clinic, settings, W2).sent == 1
    clinic.live.store.withdraw_by_attendee(kit.kit_id, code, "en")
    assert _run(clinic, settings, VISIT + timedelta(days=40)).as_json()["sent"] == 0
    assert len(gateway.received) == 1


def test_withdrawn_or_answered_while_a_run_is_sending(clinic: Clinic, gateway: StandIn) -> None:
    kit = enroll_kit(clinic.live)
    phones = {"+447700900101": new_referral_code(), "+447700900102": new_referral_code()}
    phones["+447700900103"] = new_referral_code()
    records: list[dict[str, Any]] = []
    for phone, code in phones.items():
        records += referral_records(kit.kit_id, code, visit_at=VISIT, phone=phone)
    send(clinic, kit, records)

    def meanwhile(body: dict[str, Any]) -> None:
        # While the first SMS is with the gateway, one attendee withdraws on the slip's
        # page and the other answers the check-in.
        if len(gateway.received) > 1:
            return
        others = [c for p, c in phones.items() if p != body["to"]]
        clinic.live.store.withdraw_by_attendee(kit.kit_id, others[0], "en")
        _respond(clinic, kit, others[1], "w2", W2)

    gateway.on_request = meanwhile
    assert _run(clinic, _settings(clinic, gateway), W2).sent == 1
    assert len(gateway.received) == 1


def test_responded_in_the_window_gets_none_but_the_next_window_does(
    clinic: Clinic, gateway: StandIn
) -> None:
    kit = enroll_kit(clinic.live)
    code = new_referral_code()
    send(clinic, kit, referral_records(kit.kit_id, code, visit_at=VISIT))
    _respond(clinic, kit, code, "w2", VISIT + timedelta(days=11, hours=1))
    settings = _settings(clinic, gateway)
    assert _run(clinic, settings, W2).sent == 0
    assert _run(clinic, settings, VISIT + timedelta(days=39)).sent == 1
    assert _status(clinic, code) == [("w6", "sent", 1, "")]


def test_retry_on_5xx_and_timeout_never_on_4xx(clinic: Clinic, gateway: StandIn) -> None:
    kit = enroll_kit(clinic.live)
    flaky, refused = new_referral_code(), new_referral_code()
    send(clinic, kit, referral_records(kit.kit_id, flaky, visit_at=VISIT))
    settings = _settings(clinic, gateway, sms_max_attempts=3)
    gateway.answer(500)
    counts = _run(clinic, settings, W2)
    assert counts.as_json() == {"sent": 0, "failed": 0, "retry": 1, "skipped": 0}
    assert _status(clinic, flaky) == [("w2", "pending", 1, "HTTP 500")]
    gateway.answer(200, delay=2.5)  # longer than the 1 s timeout
    assert _run(clinic, settings, W2 + timedelta(minutes=15)).retry == 1
    assert _status(clinic, flaky) == [("w2", "pending", 2, "timeout")]
    gateway.answer(200)
    assert _run(clinic, settings, W2 + timedelta(minutes=30)).sent == 1
    assert _status(clinic, flaky) == [("w2", "sent", 3, "")]
    assert len(gateway.received) == 3

    later = referral_records(kit.kit_id, refused, visit_at=VISIT, phone="+1 202 555 0101")
    send(clinic, kit, later)
    gateway.answer(400)
    counts = _run(clinic, settings, W2 + timedelta(hours=1))
    assert counts.as_json() == {"sent": 0, "failed": 1, "retry": 0, "skipped": 0}
    assert _status(clinic, refused) == [("w2", "failed", 1, "HTTP 400")]
    gateway.answer(200)
    assert _run(clinic, settings, W2 + timedelta(hours=2)).as_json()["sent"] == 0
    assert len(gateway.received) == 4


def test_attempts_run_out(clinic: Clinic, gateway: StandIn) -> None:
    kit = enroll_kit(clinic.live)
    code = new_referral_code()
    send(clinic, kit, referral_records(kit.kit_id, code, visit_at=VISIT))
    settings = _settings(clinic, gateway, sms_max_attempts=2)
    gateway.answer(503)
    assert _run(clinic, settings, W2).retry == 1
    assert _run(clinic, settings, W2 + timedelta(hours=1)).failed == 1
    assert _run(clinic, settings, W2 + timedelta(hours=2)).as_json()["failed"] == 0
    assert _status(clinic, code) == [("w2", "failed", 2, "HTTP 503")]
    assert len(gateway.received) == 2


def test_sent_once_per_window_when_two_runs_race(clinic: Clinic, gateway: StandIn) -> None:
    kit = enroll_kit(clinic.live)
    codes = [new_referral_code() for _ in range(6)]
    records: list[dict[str, Any]] = []
    for n, code in enumerate(codes):
        records += referral_records(kit.kit_id, code, visit_at=VISIT, phone=f"+4477009001{n:02d}")
    send(clinic, kit, records)
    settings = _settings(clinic, gateway)
    gateway.answer(200, delay=0.2)  # each send takes a while: the runs overlap
    stores = [ServerStore(clinic.live.db_url, clock=clinic.clock) for _ in range(2)]
    start = threading.Barrier(2)
    results: list[reminders.Counts] = []

    def one(store: ServerStore) -> None:
        start.wait()
        results.append(_run(clinic, settings, W2, store))

    threads = [threading.Thread(target=one, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for s in stores:
            s.close()
    assert len(results) == 2
    assert sum(r.sent for r in results) == 6
    to = sorted(r.body["to"] for r in gateway.received)
    assert to == sorted(f"+4477009001{n:02d}" for n in range(6))


def test_slip_link_in_the_slips_language(db_url: str, gateway: StandIn) -> None:
    with run_clinic(db_url, public_url="https://triage.example.org") as clinic:
        kit = enroll_kit(clinic.live)
        code, spanish = new_referral_code(), new_referral_code()
        records = referral_records(kit.kit_id, code, visit_at=VISIT)
        records += referral_records(
            kit.kit_id, spanish, visit_at=VISIT, phone="+34612000111", language="es"
        )
        send(clinic, kit, records)
        settings = _settings(clinic, gateway, public_url="https://triage.example.org")
        assert _run(clinic, settings, W2).sent == 2
    texts = {r.body["to"]: r.body["text"] for r in gateway.received}
    compact = code.replace("-", "")
    english = texts["+447700900123"]
    assert english == (
        "popup-kit: your back-pain check-in is due. Please open "
        f"https://triage.example.org/r/{compact}?s={sign_code(code, kit.slip_key)}&l=en"
    )
    assert texts["+34612000111"].startswith("popup-kit: ya puede hacer su control")
    assert texts["+34612000111"].endswith(f"?s={sign_code(spanish, kit.slip_key)}&l=es")


def test_without_a_public_url_the_text_points_to_the_slip(clinic: Clinic, gateway: StandIn) -> None:
    kit = enroll_kit(clinic.live)
    send(clinic, kit, referral_records(kit.kit_id, new_referral_code(), visit_at=VISIT))
    assert _run(clinic, _settings(clinic, gateway), W2).sent == 1
    assert gateway.received[0].body["text"] == (
        "popup-kit: your back-pain check-in is due. Please open the link on your slip "
        "(or scan its QR code)."
    )


def test_no_phone_number_in_any_log_line(
    clinic: Clinic, gateway: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    kit = enroll_kit(clinic.live)
    records: list[dict[str, Any]] = []
    for phone in ("+44 7700 900123", "+34 612 345 678", "0770 0900 999"):
        records += referral_records(kit.kit_id, new_referral_code(), visit_at=VISIT, phone=phone)
    send(clinic, kit, records)
    settings = _settings(clinic, gateway)
    caplog.set_level(logging.DEBUG)
    gateway.answer(200, 500, 400)
    _run(clinic, settings, W2)
    _run(clinic, settings, W2 + timedelta(hours=1))
    lines = [r.getMessage() for r in caplog.records]
    assert any('"event": "reminders_run"' in line for line in lines)
    assert any('"event": "reminder"' in line for line in lines)
    digits = ("7700900123", "612345678", "07700900999", "900123", "345 678")
    for line in lines:
        squashed = line.replace(" ", "")
        assert not any(d.replace(" ", "") in squashed for d in digits), line


def test_e164() -> None:
    assert e164("+44 7700 900123") == "+447700900123"
    assert e164("0044 (7700) 900-123") == "+447700900123"
    assert e164("07700 900123") is None
    assert e164("+0 1234567") is None
    assert e164("") is None


def test_gateway_connection_refused_is_retried() -> None:
    with sms_gateway() as stand_in:
        url = stand_in.url
    assert Gateway(url, timeout=1.0).send("+447700900123", "x").result == "retry"


def test_the_servers_own_periodic_run(sqlite_url: str, gateway: StandIn) -> None:
    with run_clinic(
        sqlite_url, sms_webhook_url=gateway.url, reminders_every_minutes=0.005
    ) as clinic:
        kit = enroll_kit(clinic.live)
        send(clinic, kit, referral_records(kit.kit_id, new_referral_code(), visit_at=VISIT))
        clinic.clock.now = W2
        arrived = threading.Event()
        gateway.on_request = lambda _body: arrived.set()
        assert arrived.wait(timeout=30)
        # Later runs of the task send nothing more in this window.
        for _ in range(200):
            if _status(clinic, "%") and _status(clinic, "%")[0][1] == "sent":
                break
            threading.Event().wait(0.05)
        assert [s for _, s, *_ in _status(clinic, "%")] == ["sent"]
        threading.Event().wait(1.0)  # a few more runs of the task
    assert len(gateway.received) == 1

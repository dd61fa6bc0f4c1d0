"""The attendee's landing page /r/CODE, served by the real server."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator

import pytest
import requests

from sync import protocol as p
from tests.sync.live_server import (
    EnrolledKit,
    LiveServer,
    ManualClock,
    PlainCodes,
    consent_record,
    enroll_kit,
    ingest,
    run_server,
    visit_record,
    withdrawal_record,
)

CODES = PlainCodes()


@pytest.fixture
def rate_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def landing_server(sqlite_url: str, rate_clock: ManualClock) -> Iterator[LiveServer]:
    with run_server(
        sqlite_url, rate_clock=rate_clock, emergency_number="112", code_rules=CODES
    ) as live:
        yield live


def _open(server: LiveServer, kit: EnrolledKit, code: str) -> requests.Response:
    """What a phone opens from the slip's QR: /r/CODE?s=SIGNATURE."""
    flat = code.replace("-", "")
    return requests.get(
        f"{server.url}/r/{flat}", params={"s": CODES.sign(code, kit.slip_key)}, timeout=10
    )


def _text(response: requests.Response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


def _phone_sized(response: requests.Response) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers[p.PROTOCOL_HEADER] == "1"
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in response.text
    # Self-contained: no scripts, stylesheets, images or fonts from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b|url\(|src=", response.text)


def test_signed_code_before_and_after_sync(landing_server: LiveServer) -> None:
    kit = enroll_kit(landing_server)
    code = CODES.new_code()
    before = _open(landing_server, kit, code)
    assert before.status_code == 200
    _phone_sized(before)
    assert "Your booth will upload your referral soon" in before.text

    contact = {"name": "Maria Lopez", "phone": "+44 7700 900123"}
    visit = visit_record(kit.kit_id, code=code, triage="urgent", contact=contact)
    ingest(landing_server, kit, [visit, consent_record(kit.kit_id, visit["body"]["visit_id"])])
    after = _open(landing_server, kit, code)
    assert after.status_code == 200
    _phone_sized(after)
    text = _text(after)
    assert "upload your referral soon" not in text
    instruction = "A clinician needs to talk to you today or tomorrow."
    steps = [
        "Scan the code today to book a call or ask for a call-back within 24 hours.",
        "If you cannot get a call within 24 hours, go to the emergency department or urgent "
        "care today.",
    ]
    assert instruction in text and all(step in text for step in steps)
    for private in ("Maria", "900123", "47", "RO1", "Ana", visit["body"]["visit_id"]):
        assert private not in text
    # Typed by hand without the signature: the code alone is on the slip in large type,
    # so it gets only the generic page, with neither the level nor its advice.
    typed = requests.get(f"{landing_server.url}/r/{code.lower()}", timeout=10)
    assert typed.status_code == 404
    assert instruction not in _text(typed) and "urgent" not in _text(typed).lower()


def test_levels_get_their_own_advice(landing_server: LiveServer) -> None:
    kit = enroll_kit(landing_server)
    pages = {}
    for level in ("emergency", "urgent", "routine", "self_care"):
        code = CODES.new_code()
        visit = visit_record(kit.kit_id, code=code, triage=level)
        ingest(landing_server, kit, [visit, consent_record(kit.kit_id, visit["body"]["visit_id"])])
        pages[level] = _text(_open(landing_server, kit, code))
    assert len(set(pages.values())) == 4
    assert "Emergency Department" in pages["emergency"]
    assert "112" in pages["emergency"]
    go_now = "Go to the Emergency Department now. Show this slip."
    assert go_now in pages["emergency"] and go_now not in pages["self_care"]
    # Every page keeps the emergency number, under the cauda equina warning.
    assert all("Emergency number: 112" in page for page in pages.values())


def test_known_visit_without_c2_or_withdrawn_shows_no_level(landing_server: LiveServer) -> None:
    kit = enroll_kit(landing_server)
    for share, withdraw in ((False, False), (True, True)):
        code = CODES.new_code()
        visit = visit_record(kit.kit_id, code=code, triage="emergency")
        visit_id = visit["body"]["visit_id"]
        records = [visit, consent_record(kit.kit_id, visit_id, c2=share)]
        if withdraw:
            records.append(withdrawal_record(kit.kit_id, visit_id))
        ingest(landing_server, kit, records)
        page = _open(landing_server, kit, code)
        assert page.status_code == 200
        if withdraw:  # withdrawn at the booth: the page says only that
            assert "Your consent is withdrawn" in page.text
            assert "Withdraw my consent" not in page.text
        else:
            assert "Follow the advice on your slip" in page.text
            assert "Emergency number: 112" in page.text  # the warning's number, not the level
        assert "Emergency Department now" not in page.text


def test_invalid_code_or_signature_is_not_found(landing_server: LiveServer) -> None:
    kit = enroll_kit(landing_server)
    code = CODES.new_code()
    sig = CODES.sign(code, kit.slip_key)
    forged = CODES.sign(code, secrets.token_bytes(32))  # a key no enrolled kit holds
    known = CODES.new_code()
    visit = visit_record(kit.kit_id, code=known)
    ingest(landing_server, kit, [visit, consent_record(kit.kit_id, visit["body"]["visit_id"])])
    for path, params in (
        (f"/r/{code}", {"s": forged}),
        (f"/r/{code}", {}),  # unknown code, no signature
        (f"/r/{code}", {"s": ""}),
        (f"/r/{known}", {"s": forged}),  # known code, forged signature
        ("/r/NOT-A-CODE", {"s": sig}),
        ("/r/" + "9" * 40, {}),
        ("/r/%00%01", {"s": sig}),
    ):
        page = requests.get(landing_server.url + path, params=params, timeout=10)
        assert page.status_code == 404, path
        assert "Not found" in page.text
        assert "upload" not in page.text
    assert _open(landing_server, kit, code).status_code == 200


def test_landing_is_rate_limited_per_client(sqlite_url: str) -> None:
    rate_clock = ManualClock()
    with run_server(
        sqlite_url, rate_clock=rate_clock, code_rules=CODES, landing_rate=(20, 60.0)
    ) as server:
        url = f"{server.url}/r/{CODES.new_code()}"
        statuses = [requests.get(url, timeout=10).status_code for _ in range(21)]
        assert statuses[:20] == [404] * 20
        assert statuses[20] == 429
        limited = requests.get(url, timeout=10)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
        # The sync API is not throttled by the landing page's limit.
        assert requests.get(server.api("/health"), timeout=10).status_code == 200
        rate_clock.now += 3  # one token back after Retry-After
        assert requests.get(url, timeout=10).status_code == 404
        assert requests.get(url, timeout=10).status_code == 429


def test_real_slip_url_is_recognised(sqlite_url: str) -> None:
    from printouts.codes import compact_code, new_referral_code
    from printouts.payload import parse_slip_url, slip_url

    with run_server(sqlite_url) as server:
        kit = enroll_kit(server)
        code = new_referral_code()
        url = slip_url("https://triage.example.org", code, kit.slip_key, "es")
        base, in_url, sig = parse_slip_url(url)
        assert base == "https://triage.example.org" and in_url == code
        # The phone opens exactly the path the QR carries: the compact code.
        assert url.endswith(f"/r/{compact_code(code)}?s={sig}&l=es")
        page = requests.get(server.url + url.removeprefix(base), timeout=10)
        assert page.status_code == 200 and "enviará su derivación pronto" in page.text
        page = requests.get(f"{server.url}/r/{compact_code(code)}", params={"s": sig}, timeout=10)
        assert page.status_code == 200 and "upload your referral soon" in page.text
        bad = requests.get(f"{server.url}/r/{in_url}", params={"s": sig[::-1]}, timeout=10)
        assert bad.status_code == 404


def test_a_slip_whose_visit_arrived_costs_one_signature_check(
    landing_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kit that sent the code is tried first, whatever the number of enrolled kits;
    the others only for a slip whose visit has not arrived."""
    from sync.server.routers import slip

    # Named so that the holder comes last in the kits' own order.
    kits = [enroll_kit(landing_server, f"kit-a{i}") for i in range(5)]
    holder = enroll_kit(landing_server, "kit-z-holder")
    visit = visit_record(holder.kit_id, code="HOLD-ERKI-T000")
    ingest(
        landing_server, holder, [consent_record(holder.kit_id, visit["body"]["visit_id"]), visit]
    )
    checked: list[bytes] = []
    real = slip.signature_valid

    def counted(rules: object, code: str, sig: str, key: bytes) -> bool:
        checked.append(key)
        return real(rules, code, sig, key)  # type: ignore[arg-type]

    monkeypatch.setattr(slip, "signature_valid", counted)
    store = landing_server.store
    sig = CODES.sign("HOLD-ERKI-T000", holder.slip_key)
    assert slip.owner_of(store, CODES, "HOLD-ERKI-T000", sig) == holder.kit_id
    assert checked == [holder.slip_key]
    checked.clear()
    # Not arrived: every kit may have signed it.
    other = kits[2]
    sig = CODES.sign("NOTA-RRIV-ED00", other.slip_key)
    assert slip.owner_of(store, CODES, "NOTA-RRIV-ED00", sig) == other.kit_id
    assert other.slip_key in checked

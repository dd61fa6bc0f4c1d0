"""Every attendee POST route answers an over-long signature or field with the same clean
refusal the other refusals use (404 or 422, the attendee page), never a server error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.sync.live_server import (
    LiveServer,
    PlainCodes,
    consent_record,
    enroll_kit,
    ingest,
    run_server,
    visit_record,
)

CODES = PlainCodes()
LONG = "x" * 10_000
ROUTES = ("/withdraw", "/call")


@pytest.fixture
def centre(db_url: str) -> Iterator[LiveServer]:
    with run_server(db_url, code_rules=CODES, landing_rate=(100_000, 1.0)) as live:
        yield live


def test_over_long_signature_is_refused_like_a_forged_one(centre: LiveServer) -> None:
    kit = enroll_kit(centre)
    code = CODES.new_code()
    visit = visit_record(kit.kit_id, code=code, triage="routine")
    ingest(centre, kit, [consent_record(kit.kit_id, visit["body"]["visit_id"]), visit])
    base = f"{centre.url}/r/{code.replace('-', '')}"
    good = CODES.sign(code, kit.slip_key)
    for route in ROUTES:
        form = {"lang": "en", "action": "callback", "confirm": "yes"}
        forged = requests.post(base + route, data={**form, "s": good[:-1] + "x"}, timeout=10)
        assert forged.status_code in (404, 422)
        for sig in (LONG, "é" * 5000, "A" * 10_000):
            answer = requests.post(base + route, data={**form, "s": sig}, timeout=10)
            assert answer.status_code == forged.status_code, (route, len(sig))
            assert answer.headers["content-type"] == forged.headers["content-type"]
            assert answer.text == forged.text
    # A valid signature with an over-long field: refused or ignored, never a 5xx.
    for field in ("slot", "phone", "window", "lang", "action", "confirm"):
        for action in ("hold", "confirm", "callback", "cancel", "cancel_callback"):
            data = {"s": good, "lang": "en", "action": action, field: "9" * 10_000}
            answer = requests.post(base + "/call", data=data, timeout=10, allow_redirects=False)
            assert answer.status_code < 500, (field, action)
        data = {"s": good, field: "9" * 10_000}
        answer = requests.post(base + "/withdraw", data=data, timeout=10, allow_redirects=False)
        assert answer.status_code < 500, field

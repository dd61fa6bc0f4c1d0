"""Fuzzing the real server from its own OpenAPI document (schemathesis): whatever comes
in, valid or not, plain or gzip-compressed, the answer is never a 5xx and always carries
the protocol header."""

from __future__ import annotations

import gzip
import itertools
import json
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from sync import protocol as p
from sync.records import content_hash
from tests.sync.live_server import EnrolledKit, LiveServer, enroll_kit

pytestmark = pytest.mark.slow

EXAMPLES = 50  # per operation and mode
NOTHING_TO_NEGATE = {
    ("POST", "/r/{code}/withdraw"),
    ("POST", "/r/{code}/call"),
    ("POST", "/r/{code}/checkin"),
}
"""Operations whose only declared input is a free string in the path, so that no invalid
request can be made from the document (the withdrawal, call and check-in forms are read by
the routes themselves and tested in test_server_withdraw_page.py, test_server_booking.py
and test_followups.py)."""


def _deepen(case: Any, kit: EnrolledKit) -> None:
    """Point a well-formed ingest at the enrolled kit with correct hashes, so that the
    generated bodies travel all the way to the database instead of stopping at a check."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        return
    body["kit_id"] = kit.kit_id
    for record in body["records"]:
        if isinstance(record, dict):
            record["kit_id"] = kit.kit_id
            record.pop("content_hash", None)
            record["content_hash"] = content_hash(record)


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    server: LiveServer,
    kit: EnrolledKit,
    session: requests.Session,
    seen: dict[str, set[int]],
) -> None:
    # Every other body goes gzip-compressed, as kits send them.
    zip_it = itertools.cycle([False, True] if operation.body else [False])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        if mode is GenerationMode.POSITIVE and operation.path.endswith("/ingest"):
            _deepen(case, kit)
        zipped = next(zip_it)
        if zipped:
            status, marker, text = _call_gzipped(case, server, kit, session)
        else:
            response = case.call(base_url=server.url, headers=kit.headers, session=session)
            status, text = response.status_code, response.text
            marker = (response.headers.get(p.PROTOCOL_HEADER.lower()) or [None])[0]
        seen.setdefault(operation.path + (" gzip" if zipped else ""), set()).add(status)
        assert status < 500, (case.as_curl_command(), text)
        assert marker == "1"

    check()


def _call_gzipped(
    case: Any, server: LiveServer, kit: EnrolledKit, session: requests.Session
) -> tuple[int, str | None, str]:
    """The case's request with its body gzip-compressed: status, protocol header, text."""
    kwargs = case.as_transport_kwargs(base_url=server.url, headers=kit.headers)
    if "json" in kwargs:
        data: Any = json.dumps(kwargs.pop("json")).encode()
    else:
        data = kwargs.pop("data", None) or b""
    kwargs["data"] = gzip.compress(data.encode() if isinstance(data, str) else data)
    kwargs["headers"]["Content-Encoding"] = "gzip"
    response = session.request(**kwargs, timeout=30)
    return response.status_code, response.headers.get(p.PROTOCOL_HEADER), response.text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_the_server_fail(any_server: LiveServer, mode: GenerationMode) -> None:
    kit = enroll_kit(any_server)
    schema = schemathesis.openapi.from_url(f"{any_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/api/v1/ingest", "/api/v1/have", "/api/v1/enroll", "/r/{code}"} <= paths
    seen: dict[str, set[int]] = {}
    unnegatable: set[tuple[str, str]] = set()
    with requests.Session() as session:
        for operation in operations:
            takes_input = any(
                len(group) for group in (operation.path_parameters, operation.query, operation.body)
            )
            if mode is GenerationMode.NEGATIVE and not takes_input:
                continue  # nothing to get wrong in a request without input
            try:
                _fuzz(operation, mode, any_server, kit, session, seen)
            except Unsatisfiable:
                if mode is not GenerationMode.NEGATIVE:
                    raise
                unnegatable.add((operation.method.upper(), operation.path))
    assert unnegatable <= NOTHING_TO_NEGATE

    # The fuzzing reached past validation: some generated records were stored or
    # refused one by one (200), not all turned away as a whole (422).
    if mode is GenerationMode.POSITIVE:
        assert 200 in seen["/api/v1/ingest"]
        assert 200 in seen["/api/v1/have"]
        assert 200 in seen["/api/v1/ingest gzip"]
        assert 200 in seen["/api/v1/have gzip"]

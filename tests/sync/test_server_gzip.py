"""Gzip batches: the server inflates them within the body limit, refuses bombs, damaged
and unknown encodings, and refuses a stranger's upload before reading it."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import zlib
from collections.abc import Iterator

import pytest
import requests

from sync import protocol as p
from sync.records import content_hash
from sync.server.limits import MAX_BODY_BYTES, BadEncoding, Inflater, TooLarge
from tests.sync.live_server import (
    LiveServer,
    enroll_kit,
    envelope,
    ingest,
    visit_record,
)

MIB = 1024 * 1024


def _marked(response: requests.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert p.is_protocol_response(response.status_code, response.headers, response.content)
    body: dict[str, str] = response.json()
    return body


def _bomb(inflated: int, *, members: int = 1) -> bytes:
    """A gzip stream of zeros that inflates to ``inflated`` bytes, made without holding
    them: ``members`` copies of one compressed member (RFC 1952 allows concatenation)."""
    per_member = inflated // members
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MIB)
    parts = [squeeze.compress(block) for _ in range(per_member // MIB)]
    parts.append(squeeze.compress(bytes(per_member % MIB)))
    parts.append(squeeze.flush())
    return b"".join(parts) * members


def _post(
    server: LiveServer, path: str, data: bytes | Iterator[bytes], headers: dict[str, str]
) -> requests.Response:
    return requests.post(
        server.api(path),
        data=data,
        headers={"Content-Type": "application/json", **headers},
        timeout=60,
    )


def test_a_gzip_batch_is_stored_and_its_receipts_are_over_the_records(
    server: LiveServer,
) -> None:
    kit = enroll_kit(server)
    records = [visit_record(kit.kit_id) for _ in range(3)]
    body = json.dumps({"kit_id": kit.kit_id, "records": [envelope(r) for r in records]})
    zipped = _post(
        server, "/ingest", gzip.compress(body.encode()), {**kit.headers, "Content-Encoding": "gzip"}
    )
    results = p.IngestResponse.model_validate_json(zipped.content).results
    assert [r.status for r in results] == ["accepted"] * 3
    for record, result in zip(records, results, strict=True):
        assert result.receipt is not None
        assert p.verify_receipt(
            result.receipt,
            kit.credentials.receipt_key,
            record_id=str(record["record_id"]),
            content_hash=content_hash(record),
        )
    # The same records sent plain are the same records: already received, same receipts.
    plain = p.IngestResponse.model_validate_json(ingest(server, kit, records).content).results
    assert [r.status for r in plain] == ["already_received"] * 3
    assert [r.receipt for r in plain] == [r.receipt for r in results]
    held = {r.record_id for r in server.store.records()}
    assert held == {str(r["record_id"]) for r in records}


@pytest.mark.parametrize(
    ("members", "chunked"),
    [(1, False), (128, False), (128, True)],
    ids=["one-member", "many-members", "chunked"],
)
def test_a_gzip_bomb_gets_413_and_the_server_carries_on(
    any_server: LiveServer, members: int, chunked: bool
) -> None:
    kit = enroll_kit(any_server)
    bomb = _bomb(members * 8 * MIB if members > 1 else 64 * MIB, members=members)
    assert len(bomb) < MAX_BODY_BYTES // 8  # small on the wire, huge inflated
    data: bytes | Iterator[bytes] = bomb
    if chunked:  # no Content-Length to go by
        data = iter([bomb[i : i + 64 * 1024] for i in range(0, len(bomb), 64 * 1024)])
    response = _post(any_server, "/ingest", data, {**kit.headers, "Content-Encoding": "gzip"})
    assert _marked(response, 413)["error"] == "too_large"
    assert requests.get(any_server.api("/health"), timeout=10).status_code == 200
    results = p.IngestResponse.model_validate_json(
        ingest(any_server, kit, [visit_record(kit.kit_id)]).content
    ).results
    assert [r.status for r in results] == ["accepted"]


def test_the_inflater_stops_at_its_limit_without_inflating_the_rest() -> None:
    limit = MIB
    inflater = Inflater(limit)
    bomb = _bomb(1024 * MIB, members=128)  # 1 GiB of zeros
    fed = 0
    with pytest.raises(TooLarge):
        for i in range(0, len(bomb), 16 * 1024):
            inflater.feed(bomb[i : i + 16 * 1024])
            fed += 16 * 1024
    assert len(inflater.out) <= limit + 1
    assert fed < len(bomb) // 100  # refused within the first 1 % of the wire bytes


def test_the_inflater_takes_a_body_of_exactly_the_limit() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    inflater = Inflater(len(data))
    inflater.feed(gzip.compress(data) + gzip.compress(b""))
    assert inflater.finish() == data
    over = Inflater(len(data) - 1)
    with pytest.raises(TooLarge):
        over.feed(gzip.compress(data))
    truncated = Inflater(len(data))
    truncated.feed(gzip.compress(data)[:-10])
    with pytest.raises(BadEncoding):
        truncated.finish()


@pytest.mark.parametrize(
    "body",
    [
        b"\x1f\x8b\x08\x00" + b"\xff" * 64,  # gzip magic, garbage after
        b'{"kit_id": "plain json sent as gzip"}',
        gzip.compress(b'{"kit_id": "k", "records": []}')[:-6],  # cut short
        gzip.compress(b'{"kit_id": "k", "records": []}') + b"trailing junk",
        b"",
    ],
    ids=["garbage", "not-gzip", "truncated", "trailing-junk", "empty"],
)
def test_damaged_gzip_gets_400_not_5xx(server: LiveServer, body: bytes) -> None:
    kit = enroll_kit(server)
    response = _post(server, "/ingest", body, {**kit.headers, "Content-Encoding": "gzip"})
    assert _marked(response, 400)["error"] == "bad_encoding"
    assert requests.get(server.api("/health"), timeout=10).status_code == 200


@pytest.mark.parametrize("coding", ["br", "deflate", "gzip, br", "compress", "zstd"])
def test_an_unknown_encoding_gets_415(server: LiveServer, coding: str) -> None:
    kit = enroll_kit(server)
    body = gzip.compress(b'{"kit_id": "k", "records": []}')
    response = _post(server, "/ingest", body, {**kit.headers, "Content-Encoding": coding})
    assert _marked(response, 415)["error"] == "unsupported_encoding"


def test_identity_and_gzip_spellings_are_accepted(server: LiveServer) -> None:
    kit = enroll_kit(server)
    body = json.dumps({"kit_id": kit.kit_id, "records": []}).encode()
    for coding, data in [
        ("identity", body),
        ("x-gzip", gzip.compress(body)),
        ("GZIP", gzip.compress(body)),
    ]:
        response = _post(server, "/ingest", data, {**kit.headers, "Content-Encoding": coding})
        assert response.status_code == 200, (coding, response.text)


def _answer_to_partial_upload(
    server: LiveServer,
    authorization: str | None,
    *,
    declared: int,
    sent: int,
    gzipped: bool = True,
) -> tuple[int, dict[str, str]]:
    """POST /ingest declaring ``declared`` body bytes but sending only ``sent`` of them,
    then wait for an answer: one comes only if the server did not need the rest."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = [
            "POST /api/v1/ingest HTTP/1.1",
            f"Host: {host}",
            "Content-Type: application/json",
            f"Content-Length: {declared}",
        ]
        if gzipped:
            head.append("Content-Encoding: gzip")
        if authorization is not None:
            head.append(f"Authorization: {authorization}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"\x1f\x8b" + bytes(sent - 2))
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, json.loads(answer.read())


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer nobody:wrong", "Bearer {kit}:wrong", "Basic abc", "Bearer {kit}"],
    ids=["none", "unknown-kit", "wrong-credential", "other-scheme", "no-credential"],
)
@pytest.mark.parametrize("gzipped", [True, False], ids=["gzip", "plain"])
def test_a_stranger_big_upload_gets_401_unread(
    server: LiveServer, authorization: str | None, gzipped: bool
) -> None:
    kit = enroll_kit(server)
    if authorization is not None:
        authorization = authorization.replace("{kit}", kit.kit_id)
    # 8 MB declared, 64 KiB sent: the server answers having read at most 64 KiB.
    status, body = _answer_to_partial_upload(
        server, authorization, declared=8_000_000, sent=64 * 1024, gzipped=gzipped
    )
    assert status == 401
    assert body["error"] == "unauthenticated"
    assert requests.get(server.api("/health"), timeout=10).status_code == 200


def test_a_revoked_kit_big_upload_gets_403_unread(server: LiveServer) -> None:
    kit = enroll_kit(server)
    server.store.revoke(kit.kit_id, "laptop stolen")
    status, body = _answer_to_partial_upload(
        server, kit.headers["Authorization"], declared=8_000_000, sent=64 * 1024
    )
    assert status == 403
    assert body["error"] == "kit_revoked"


def test_api_answers_are_compressed_and_attendee_pages_are_not(server: LiveServer) -> None:
    kit = enroll_kit(server)
    records = [visit_record(kit.kit_id) for _ in range(20)]
    body = json.dumps({"kit_id": kit.kit_id, "records": [envelope(r) for r in records]})
    asked = {**kit.headers, "Accept-Encoding": "gzip"}
    zipped = _post(server, "/ingest", body.encode(), asked)
    assert zipped.headers["Content-Encoding"] == "gzip"
    results = p.IngestResponse.model_validate_json(zipped.content).results
    assert [r.status for r in results] == ["accepted"] * 20
    plain = _post(
        server,
        "/have",
        json.dumps({"record_ids": [r.record_id for r in results]}).encode(),
        {**kit.headers, "Accept-Encoding": "identity"},
    )
    assert "Content-Encoding" not in plain.headers
    assert len(p.HaveResponse.model_validate_json(plain.content).have) == 20
    page = requests.get(
        f"{server.url}/r/TEST-CODE-0000", headers={"Accept-Encoding": "gzip"}, timeout=10
    )
    assert len(page.content) > 1000  # big enough that compression would apply
    assert "Content-Encoding" not in page.headers

"""The kit's batches travel gzip-compressed; a server that refuses gzip gets them plain,
once refused and from then on."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync import protocol as p
from sync.client import sync_outbox
from sync.client import transport as client
from tests.support.fault_proxy import FaultProxy
from tests.sync.kit_side import (
    FAST,
    assert_all_on_server_once,
    kit_engine,
    queue,
    visits_with_consent,
)
from tests.sync.live_server import EnrolledKit, LiveServer, enroll_kit


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    """Each test starts with no server remembered as refusing gzip (ports get reused)."""
    client._plain_servers.clear()
    yield
    client._plain_servers.clear()


@pytest.fixture
def kit(server: LiveServer) -> EnrolledKit:
    return enroll_kit(server)


def _proxy(server: LiveServer, **options: object) -> FaultProxy:
    host, port = server.url.removeprefix("http://").split(":")
    return FaultProxy(host, int(port), **options)  # type: ignore[arg-type]


def _via(kit: EnrolledKit, proxy: FaultProxy) -> p.KitCredentials:
    return dataclasses.replace(kit.credentials, server_url=proxy.url)


def _sent_ids(bodies: list[bytes]) -> set[str]:
    ids: set[str] = set()
    for body in bodies:
        request = json.loads(body)
        ids.update(r["record_id"] for r in request.get("records", []))
    return ids


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[FaultProxy]:
    with _proxy(server) as started:
        yield started


def test_the_kit_batches_are_gzip_on_the_wire(
    server: LiveServer, kit: EnrolledKit, proxy: FaultProxy, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    records = visits_with_consent(kit.kit_id, 30)
    queue(engine, records)
    summary = sync_outbox(engine, _via(kit, proxy), FAST)
    assert summary.all_confirmed and summary.confirmed == 60
    assert proxy.encodings and set(proxy.encodings) == {"gzip"}
    inflated = [gzip.decompress(body) for body in proxy.bodies]  # raises unless gzip
    assert sum(map(len, proxy.bodies)) * 3 < sum(map(len, inflated))
    assert _sent_ids(inflated) == {str(r["record_id"]) for r in records}
    assert_all_on_server_once(server.store, engine, kit.credentials)


@pytest.mark.parametrize("status", [415, 400])
def test_a_server_refusing_gzip_gets_plain_bodies_once_refused(
    server: LiveServer, kit: EnrolledKit, tmp_path: Path, status: int
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    first = visits_with_consent(kit.kit_id, 30)
    queue(engine, first)
    with _proxy(server, refuse_gzip=status) as proxy:
        summary = sync_outbox(engine, _via(kit, proxy), FAST)
        assert summary.all_confirmed and summary.confirmed == 60
        # One gzip body refused, then that body and every later one plain.
        assert proxy.encodings[0] == "gzip"
        assert proxy.encodings[1:] and set(proxy.encodings[1:]) == {""}
        assert proxy.bodies[1] == gzip.decompress(proxy.bodies[0])
        # The next run remembers: no gzip tried at all.
        later = visits_with_consent(kit.kit_id, 5)
        queue(engine, later)
        before = len(proxy.encodings)
        again = sync_outbox(engine, _via(kit, proxy), FAST)
        assert again.all_confirmed and again.confirmed == 10
        assert len(proxy.encodings) > before
        assert set(proxy.encodings[before:]) == {""}
    assert_all_on_server_once(server.store, engine, kit.credentials)


def test_compression_can_be_turned_off(
    server: LiveServer, kit: EnrolledKit, proxy: FaultProxy, tmp_path: Path
) -> None:
    engine = kit_engine(tmp_path / "kit.sqlite3")
    records = visits_with_consent(kit.kit_id, 10)
    queue(engine, records)
    summary = sync_outbox(engine, _via(kit, proxy), dataclasses.replace(FAST, compress=False))
    assert summary.all_confirmed and summary.confirmed == 20
    assert set(proxy.encodings) == {""}
    assert _sent_ids(proxy.bodies) == {str(r["record_id"]) for r in records}

"""The fault proxy itself must act out each fault, or the sync tests prove nothing."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from sync import protocol as p
from tests.support.fault_proxy import ByteBucket, FaultProxy


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits = 0

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        type(self).hits += 1
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[tuple[str, int]]:
    _Echo.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()


def test_each_fault_is_acted_out(upstream: tuple[str, int]) -> None:
    plan = ["ok", "5xx", "429:3", "portal", "reset", "drop_after_commit", "delay:0.01"]
    with FaultProxy(*upstream, plan=plan) as proxy:
        post = lambda: requests.post(proxy.url + "/x", data=b'{"a":1}', timeout=5)  # noqa: E731
        assert post().json() == {"a": 1}
        assert post().status_code == 503
        r = post()
        assert (r.status_code, r.headers["Retry-After"]) == (429, "3")
        r = post()
        assert r.status_code == 200 and b"WiFi" in r.content
        with pytest.raises(requests.ConnectionError):
            post()
        hits_before = _Echo.hits
        with pytest.raises(requests.ConnectionError):
            post()
        assert _Echo.hits == hits_before + 1  # the server did get it
        assert post().json() == {"a": 1}
    assert proxy.requests == len(plan)


def test_hold_keeps_the_answer_until_released(upstream: tuple[str, int]) -> None:
    import threading

    with FaultProxy(*upstream, plan=["hold"]) as proxy:
        answers: list[requests.Response] = []
        caller = threading.Thread(
            target=lambda: answers.append(
                requests.post(proxy.url + "/x", data=b'{"a":2}', timeout=30)
            )
        )
        caller.start()
        assert proxy.holding.wait(timeout=10)
        assert _Echo.hits == 1 and answers == []  # the server has it; the client not yet
        proxy.release()
        caller.join(timeout=10)
        assert answers[0].json() == {"a": 2}


def test_the_byte_bucket_holds_callers_to_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = ByteBucket(1000.0, burst=500, clock=lambda: now[0], sleep=sleep)
    bucket.take(500)  # the burst goes at once
    assert slept == []
    for _ in range(10):
        bucket.take(100)
    # 1,000 bytes beyond the burst at 1,000 bytes/s: one second of waiting in all.
    assert sum(slept) == pytest.approx(1.0)
    now[0] += 5.0  # an idle link refills only up to the burst
    bucket.take(500)
    assert sum(slept) == pytest.approx(1.0)
    bucket.take(250)
    assert sum(slept) == pytest.approx(1.25)


def test_the_proxy_counts_and_paces_both_ways(upstream: tuple[str, int]) -> None:
    with FaultProxy(*upstream, bandwidth=10_000_000) as proxy:
        body = b'{"a": "' + b"x" * 20_000 + b'"}'
        assert requests.post(proxy.url + "/x", data=body, timeout=5).content == body
        assert proxy._up is not None and proxy._down is not None
        assert proxy.wire_up > len(body) and proxy.wire_down > len(body)
        assert proxy.encodings == [""]


@pytest.mark.parametrize("status", [415, 400])
def test_the_proxy_can_stand_for_a_server_without_gzip(
    upstream: tuple[str, int], status: int
) -> None:
    with FaultProxy(*upstream, refuse_gzip=status) as proxy:
        zipped = requests.post(
            proxy.url + "/x",
            data=gzip.compress(b'{"a":1}'),
            headers={"Content-Encoding": "gzip"},
            timeout=5,
        )
        assert zipped.status_code == status
        assert p.is_protocol_response(zipped.status_code, zipped.headers, zipped.content)
        assert _Echo.hits == 0  # never forwarded
        assert requests.post(proxy.url + "/x", data=b'{"a":1}', timeout=5).json() == {"a": 1}
        assert proxy.encodings == ["gzip", ""]

"""An HTTP proxy on loopback that injects the faults a market Wi-Fi produces.

Sits between a kit and the real server. Each request takes the next fault from a
plan (or from a seeded random mix) and the proxy acts it out:

- ``ok``: forward as is
- ``delay:S``: wait S seconds, then forward
- ``reset``: drop the connection (TCP RST) before forwarding
- ``5xx``: answer 503 without forwarding
- ``429:S``: answer 429 with ``Retry-After: S`` without forwarding
- ``drop_after_commit``: forward, let the server commit, then drop the connection
  before the kit sees the answer (the ambiguous timeout)
- ``portal``: answer 200 with a captive-portal HTML page
- ``hold``: forward, let the server commit, then hold the answer until :meth:`release`
  (``holding`` is set meanwhile): the moment to kill the client

``bandwidth`` (bytes per second, each way) paces every byte of requests and answers,
headers included, through a token bucket per direction shared by all connections: a slow
link. ``refuse_gzip`` (a status, 415 or 400) answers every gzip-encoded request as a
server without gzip support would, without forwarding it.
"""

from __future__ import annotations

import gzip
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sync import protocol as p

PORTAL_PAGE = (
    b"<html><head><title>Welcome to Market WiFi</title></head>"
    b"<body><h1>Accept the terms to continue</h1><form><button>Connect</button></form>"
    b"</body></html>"
)
_CHUNK = 4096
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        plan: Iterable[str] = (),
        mix: dict[str, float] | None = None,
        seed: int = 0,
        delay_all: float = 0.0,
        bandwidth: float | None = None,
        refuse_gzip: int | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._plan: deque[str] = deque(plan)
        self._mix = mix
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.delay_all = delay_all
        self.seen: Counter[str] = Counter()
        self.requests = 0
        self.log: list[tuple[str, str]] = []
        """(path, fault) of every request, in arrival order."""
        self.bodies: list[bytes] = []
        """Every request body as it came over the wire, in arrival order."""
        self.encodings: list[str] = []
        """Every request's Content-Encoding ('' for none), in arrival order."""
        self.refuse_gzip = refuse_gzip
        self.wire_up = 0
        self.wire_down = 0
        """Bytes carried each way (request and answer, headers included)."""
        self._up = ByteBucket(bandwidth) if bandwidth else None
        self._down = ByteBucket(bandwidth) if bandwidth else None
        self.holding = threading.Event()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle and the
            # client's delayed ACK add 40 ms to every answer.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def decoded_bodies(self) -> list[bytes]:
        """The request bodies as the server reads them (gzip ones inflated)."""
        with self._lock:
            pairs = list(zip(self.bodies, self.encodings, strict=True))
        return [gzip.decompress(body) if enc.lower() == "gzip" else body for body, enc in pairs]

    def set_plan(self, plan: Iterable[str]) -> None:
        with self._lock:
            self._plan = deque(plan)

    def release(self) -> None:
        """Let held answers go (to whoever still listens) and stop holding."""
        self._release.set()

    def rearm(self) -> None:
        """Hold the next ``hold`` fault again."""
        self.holding.clear()
        self._release.clear()

    def set_mix(self, mix: dict[str, float] | None) -> None:
        """Faults drawn once the plan is used up; ``None``: forward everything."""
        with self._lock:
            self._mix = mix

    def _next_fault(self, path: str) -> str:
        with self._lock:
            self.requests += 1
            if self._plan:
                fault = self._plan.popleft()
            elif self._mix:
                names = list(self._mix)
                fault = self._rng.choices(names, weights=[self._mix[n] for n in names])[0]
            else:
                fault = "ok"
            self.seen[fault.split(":")[0]] += 1
            self.log.append((path, fault))
            return fault

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        self._pace_up(len(h.requestline) + len(str(h.headers)) + 2)
        chunks = []
        while length > 0:
            chunk = h.rfile.read(min(length, _CHUNK))
            if not chunk:
                break
            self._pace_up(len(chunk))
            chunks.append(chunk)
            length -= len(chunk)
        body = b"".join(chunks)
        encoding = h.headers.get("Content-Encoding", "")
        with self._lock:
            self.bodies.append(body)
            self.encodings.append(encoding)
        if self.refuse_gzip and encoding.lower() == "gzip":
            with self._lock:
                self.requests += 1
                self.log.append((h.path, f"refuse_gzip:{self.refuse_gzip}"))
            error = p.ErrorResponse(error="http_error", detail="no gzip here").model_dump_json()
            marker = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}
            self._reply(h, self.refuse_gzip, error.encode(), "application/json", marker)
            return
        fault = self._next_fault(h.path)
        name, _, arg = fault.partition(":")
        if self.delay_all:
            time.sleep(self.delay_all)
        if name == "reset":
            _reset(h)
            return
        if name == "5xx":
            self._reply(h, 503, b"Service Unavailable", "text/plain")
            return
        if name == "429":
            self._reply(h, 429, b"Too Many Requests", "text/plain", {"Retry-After": arg or "1"})
            return
        if name == "portal":
            self._reply(h, 200, PORTAL_PAGE, "text/html")
            return
        if name == "delay":
            time.sleep(float(arg))
        status, headers, payload = self._forward(h, body)
        if name == "hold":
            self.holding.set()
            self._release.wait()
        if name == "drop_after_commit":
            _reset(h)
            return
        self._reply(h, status, payload, None, headers)

    def _pace_up(self, n: int) -> None:
        with self._lock:
            self.wire_up += n
        if self._up is not None:
            self._up.take(n)

    def _reply(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        payload: bytes,
        content_type: str | None,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
    ) -> None:
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        head = [(k, v) for k, v in items if k.lower() != "content-length"]
        if content_type:
            head.append(("Content-Type", content_type))
        head.append(("Content-Length", str(len(payload))))
        head_size = 17 + sum(len(k) + len(v) + 4 for k, v in head) + 2
        with self._lock:
            self.wire_down += head_size + len(payload)
        if self._down is not None:
            self._down.take(head_size)
        h.send_response(status)
        for key, value in head:
            h.send_header(key, value)
        h.end_headers()
        for at in range(0, len(payload), _CHUNK):
            chunk = payload[at : at + _CHUNK]
            if self._down is not None:
                self._down.take(len(chunk))
            h.wfile.write(chunk)

    def _forward(
        self, h: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_HEADERS}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS]
            return resp.status, kept, payload
        except OSError:
            return 502, [], b"upstream unreachable"
        finally:
            conn.close()


class ByteBucket:
    """A link's capacity: ``rate`` bytes per second, up to ``burst`` at once. Callers
    that take more than is there sleep off the debt, so together they never exceed it."""

    def __init__(
        self,
        rate: float,
        burst: int = 16 * 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            self.sleep(wait)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (or was killed) before its answer is the point of the
        # exercise, not an error worth a traceback.
        return


def _reset(h: BaseHTTPRequestHandler) -> None:
    # SO_LINGER 0 makes close() send RST: the client sees a reset, not a clean EOF.
    sock = h.connection
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True
    sock.close()

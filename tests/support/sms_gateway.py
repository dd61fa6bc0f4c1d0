"""A local SMS gateway stand-in (the one mock the reminders' tests allow): a tiny HTTP
server on a loopback port that records each request and answers as the test tells it
(200, 400, 500, or slowly)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StandIn:
    url: str
    received: list[Received] = field(default_factory=list)
    # The statuses to answer, in order; the last one repeats.
    answers: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0  # seconds before answering
    # Called with each request's body before it is answered (what happens meanwhile).
    on_request: Callable[[dict[str, Any]], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *statuses: int, delay: float = 0.0) -> None:
        with self.lock:
            self.answers = list(statuses)
            self.delay = delay

    def _next(self) -> tuple[int, float]:
        with self.lock:
            status = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
            return status, self.delay


@contextmanager
def sms_gateway() -> Iterator[StandIn]:
    stand_in = StandIn(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            with stand_in.lock:
                stand_in.received.append(Received(dict(self.headers.items()), json.loads(raw)))
            body = stand_in.received[-1].body
            if stand_in.on_request is not None:
                stand_in.on_request(body)
            status, delay = stand_in._next()
            if delay:
                time.sleep(delay)
            reply = json.dumps({"status": status}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}/sms"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

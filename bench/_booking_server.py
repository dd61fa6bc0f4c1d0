"""The triage server in a process of its own, for bench/booking.py: the test suite's plain
referral codes, and page limits out of the way of 50 attendees behind one address.

Usage: python bench/_booking_server.py DB_URL PORT KEY_FILE
Prints ``listening`` once it accepts connections.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn

from sync.server import create_app
from tests.sync.live_server import PlainCodes


def main() -> None:
    db_url, port, key_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = create_app(
        db_url, code_rules=PlainCodes(), landing_rate=(10_000_000, 1.0), key_file=key_file
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    print("listening", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

"""The triage server in a process of its own, for bench/sync.py.

Usage: python bench/_sync_server.py DB_URL PORT
Prints ``listening`` once it accepts connections.
"""

from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn

from sync.server import create_app


def main() -> None:
    db_url, port = sys.argv[1], int(sys.argv[2])
    # PostgreSQL has no folder of its own for the receipt key: a throwaway one.
    keys = Path(tempfile.mkdtemp(prefix="popup-kit-bench-")) / "server.key"
    app = create_app(db_url, key_file=str(keys))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    print("listening", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

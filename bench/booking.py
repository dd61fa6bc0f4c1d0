"""Bookings per second with 50 attendees at once, and no double booking.

400 attendees (routine slips of one kit) and 40 slots of 10 places (400 in all): 50 threads
take the attendees in turn, each holding a slot (the next one on a 409) and confirming it,
as the call page's forms do. Beside it, in the same run, the same 50 threads reading the
slip's landing page (no write). Then the database is checked: no slot above capacity, and
each slot's counter equal to its confirmed bookings. On SQLite and on PostgreSQL (a
throwaway cluster, fsync on) when the binaries are there.

Usage: uv run python bench/booking.py [--attendees N] [--threads N]
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from sqlalchemy import text

from bench._server import server_process
from sync import protocol as p
from sync.server.bookings import Bookings
from sync.server.store import ServerStore
from tests.support.pg import PostgresUnavailable, create_database, postgres_cluster
from tests.sync.live_server import PlainCodes, consent_record, envelope, visit_record

ROOT = Path(__file__).resolve().parent.parent
CODES = PlainCodes()
SLOTS, PLACES = 40, 10


def prepare(db_url: str, url: str, attendees: int) -> tuple[bytes, list[str], list[int]]:
    """An enrolled kit, its routine visits (shared, with contact), and the slots."""
    store = ServerStore(db_url)
    try:
        token = store.create_enrollment("kit-bench")
        slip_key = secrets.token_bytes(32)
        answer = requests.post(
            url + p.API_PREFIX + "/enroll",
            json={
                "token": token,
                "kit_id": "kit-bench",
                "slip_key": base64.b64encode(slip_key).decode(),
            },
            timeout=30,
        )
        answer.raise_for_status()
        credential = answer.json()["credential"]
        codes = [CODES.new_code() for _ in range(attendees)]
        records = []
        for code in codes:
            visit = visit_record("kit-bench", code=code, contact={"name": "A", "phone": "1"})
            records += [consent_record("kit-bench", visit["body"]["visit_id"]), visit]
        for start in range(0, len(records), 400):
            sent = requests.post(
                url + p.API_PREFIX + "/ingest",
                json={
                    "kit_id": "kit-bench",
                    "records": [envelope(r) for r in records[start : start + 400]],
                },
                headers={"Authorization": f"Bearer kit-bench:{credential}"},
                timeout=120,
            )
            sent.raise_for_status()
        first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        calls = Bookings(store.engine, clock=store.clock)
        slots = [
            calls.add_slots(
                first + timedelta(minutes=15 * i), 15, PLACES, weeks=1, zone=ZoneInfo("UTC")
            )[0].slot_id
            for i in range(SLOTS)
        ]
        return slip_key, codes, slots
    finally:
        store.close()


def in_threads(
    threads: int, codes: list[str], work: Callable[[requests.Session, int, str], None]
) -> float:
    """Seconds for ``threads`` threads to run ``work`` over every code, taken in turn."""
    lock = threading.Lock()
    queue = list(enumerate(codes))
    barrier = threading.Barrier(threads + 1)

    def run() -> None:
        with requests.Session() as session:
            barrier.wait()
            while True:
                with lock:
                    if not queue:
                        return
                    i, code = queue.pop()
                work(session, i, code)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - start


def measure(db_url: str, attendees: int, threads: int) -> dict[str, float]:
    # The receipt key in a folder of its own (never in a shared one such as /tmp).
    with (
        tempfile.TemporaryDirectory() as keys_dir,
        server_process("_booking_server.py", db_url, str(Path(keys_dir) / "k" / "key.pem")) as url,
    ):
        slip_key, codes, slots = prepare(db_url, url, attendees)
        booked = [0]
        refused = [0]
        count = threading.Lock()

        def page(session: requests.Session, _i: int, code: str) -> None:
            flat = code.replace("-", "")
            got = session.get(f"{url}/r/{flat}", params={"s": CODES.sign(code, slip_key)})
            assert got.status_code == 200

        def book(session: requests.Session, i: int, code: str) -> None:
            flat, sig = code.replace("-", ""), CODES.sign(code, slip_key)
            target = f"{url}/r/{flat}/call"
            for k in range(SLOTS):
                slot = slots[(i + k) % SLOTS]
                form = {"s": sig, "action": "hold", "slot": str(slot)}
                held = session.post(target, data=form, allow_redirects=False)
                if held.status_code == 303:
                    done = session.post(
                        target, data={"s": sig, "action": "confirm"}, allow_redirects=False
                    )
                    assert done.status_code == 303, done.status_code
                    with count:
                        booked[0] += 1
                    return
                assert held.status_code == 409, held.status_code
            with count:
                refused[0] += 1

        reading = in_threads(threads, codes, page)
        booking = in_threads(threads, codes, book)
        store = ServerStore(db_url)
        try:
            with store.engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT s.id, s.capacity, s.booked, (SELECT COUNT(*) FROM call_booking "
                        "AS b WHERE b.slot_id = s.id AND b.status = 'booked') FROM call_slot AS s"
                    )
                ).all()
        finally:
            store.close()
    over = sum(1 for _id, cap, n, real in rows if n > cap or n != real)
    return {
        "pages_per_s": attendees / reading,
        "bookings_per_s": booked[0] / booking,
        "booked": booked[0],
        "refused": refused[0],
        "double": over,
        "places": SLOTS * PLACES,
    }


def show(name: str, figures: dict[str, float]) -> None:
    print(
        f"{name}: {figures['bookings_per_s']:.0f} bookings/s (hold + confirm) beside "
        f"{figures['pages_per_s']:.0f} landing pages/s; booked {figures['booked']:.0f} of "
        f"{figures['places']:.0f} places, {figures['refused']:.0f} attendees turned away, "
        f"slots overbooked or miscounted: {figures['double']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attendees", type=int, default=400)
    parser.add_argument("--threads", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        show(
            "SQLite",
            measure(f"sqlite:///{Path(folder) / 'server.sqlite3'}", args.attendees, args.threads),
        )
    try:
        with postgres_cluster(fsync=True) as cluster:
            show("PostgreSQL", measure(create_database(cluster), args.attendees, args.threads))
    except PostgresUnavailable as exc:
        print(f"PostgreSQL: skipped ({exc})")


if __name__ == "__main__":
    main()

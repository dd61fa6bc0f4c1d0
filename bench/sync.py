"""Sync speed: batches against one record per request, and the server's ingest rate.

1. 2,000 visits from one kit through a proxy that adds 50 ms to every request (a market
   phone hotspot's round trip), by the sync client, side by side with the same visits
   sent one record per request (as OpenRosa submissions go) through the same proxy.
2. The server's ingest rate while 20 kits sync at once, each through the real client, on
   SQLite and on PostgreSQL (a throwaway cluster, fsync on, when the binaries are there).
3. 2,000 visits from one kit through a proxy limited to 1 Mbit/s each way with 100 ms
   round trips (a busy market hotspot), by the sync client with gzip (the default)
   against the same client sending and taking everything plain, in the same run.

The server runs in a process of its own on a loopback port, with a fresh database for
every figure. Usage: uv run python bench/sync.py [--visits N] [--kits N] [--per-kit N]
[--only gzip]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from bench._server import server_process
from sync import protocol as p
from sync.client import SyncConfig, SyncSummary, sync_outbox
from sync.server.store import ServerStore
from tests.support.fault_proxy import FaultProxy
from tests.support.pg import PostgresUnavailable, create_database, postgres_cluster
from tests.sync.kit_side import kit_engine, queue, visit

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 50.0
TARGET_BATCH_S = 3.0
TARGET_RATE = 1500.0
PROXY_DELAY = 0.05
SLOW_LINK = 1_000_000 / 8  # 1 Mbit/s, in bytes per second
SLOW_RTT = 0.1
TARGET_GZIP_RATIO = 4.0


def enroll(db_url: str, url: str, kit_id: str) -> p.KitCredentials:
    store = ServerStore(db_url)
    try:
        token = store.create_enrollment(kit_id)
    finally:
        store.close()
    answer = requests.post(
        url + p.API_PREFIX + "/enroll",
        json={
            "token": token,
            "kit_id": kit_id,
            "slip_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        },
        timeout=30,
    )
    answer.raise_for_status()
    enrolled = p.EnrollResponse.model_validate_json(answer.content)
    return p.KitCredentials(
        url,
        kit_id,
        enrolled.credential,
        p.ed25519_receipt_key(base64.b64decode(enrolled.receipt_key)),
    )


def count_records(db_url: str) -> int:
    store = ServerStore(db_url)
    try:
        return len(store.records())
    finally:
        store.close()


def _contact(i: int) -> dict[str, str]:
    return {"name": f"Person {i}", "phone": f"+44 7700 9{i:05d}"}


def visits(kit_id: str, n: int) -> list[dict[str, object]]:
    return [visit(kit_id, contact=_contact(i)) for i in range(n)]


def _via(credentials: p.KitCredentials, proxy: FaultProxy) -> p.KitCredentials:
    return dataclasses.replace(credentials, server_url=proxy.url)


def batched_vs_single(db_dir: Path, n: int) -> tuple[float, float, int, int]:
    """Seconds for ``n`` visits by the sync client and one per request, and how many
    records each way left confirmed (with a verified receipt)."""
    kit_id = "kit-bench-a"
    records = visits(kit_id, n)

    db_batched = f"sqlite:///{db_dir / 'batched.sqlite3'}"
    with server_process("_sync_server.py", db_batched) as url:
        credentials = enroll(db_batched, url, kit_id)
        engine = kit_engine(db_dir / "kit-batched.sqlite3")
        queue(engine, records)
        host, port = url.removeprefix("http://").split(":")
        with FaultProxy(host, int(port), delay_all=PROXY_DELAY) as proxy:
            start = time.perf_counter()
            summary = sync_outbox(engine, _via(credentials, proxy))
            batched = time.perf_counter() - start
        engine.dispose()
    batched_ok = summary.confirmed if summary.all_confirmed else 0

    db_single = f"sqlite:///{db_dir / 'single.sqlite3'}"
    with server_process("_sync_server.py", db_single) as url:
        credentials = enroll(db_single, url, kit_id)
        host, port = url.removeprefix("http://").split(":")
        single_ok = 0
        with FaultProxy(host, int(port), delay_all=PROXY_DELAY) as proxy, requests.Session() as s:
            s.headers.update(credentials.headers())
            start = time.perf_counter()
            for record in records:
                body = p.IngestRequest(kit_id=kit_id, records=[p.Envelope.from_record(record)])
                answer = s.post(
                    proxy.url + p.API_PREFIX + "/ingest",
                    data=body.model_dump_json(),
                    headers={"Content-Type": "application/json"},
                    timeout=(5, 30),
                )
                (result,) = p.IngestResponse.model_validate_json(answer.content).results
                if result.receipt is not None and p.verify_receipt(
                    result.receipt, credentials.receipt_key, record_id=str(record["record_id"])
                ):
                    single_ok += 1
            single = time.perf_counter() - start
    return batched, single, batched_ok, single_ok


@dataclasses.dataclass
class LinkRun:
    seconds: float
    confirmed: int
    requests: int
    up: int
    down: int
    """Bytes each way through the proxy, headers included."""


def over_slow_link(db_dir: Path, n: int, *, compress: bool, limited: bool = True) -> LinkRun:
    """``n`` visits by the sync client through the slow link (or, not ``limited``, through
    the same proxy without limits or delay), gzip on or off."""
    kit_id = "kit-bench-link"
    name = ("gzip" if compress else "plain") + ("" if limited else "-unlimited")
    db_url = f"sqlite:///{db_dir / f'link-{name}.sqlite3'}"
    with server_process("_sync_server.py", db_url) as url:
        credentials = enroll(db_url, url, kit_id)
        engine = kit_engine(db_dir / f"kit-link-{name}.sqlite3")
        queue(engine, visits(kit_id, n))
        host, port = url.removeprefix("http://").split(":")
        proxy = (
            FaultProxy(host, int(port), delay_all=SLOW_RTT, bandwidth=SLOW_LINK)
            if limited
            else FaultProxy(host, int(port))
        )
        with proxy:
            start = time.perf_counter()
            summary = sync_outbox(engine, _via(credentials, proxy), SyncConfig(compress=compress))
            elapsed = time.perf_counter() - start
        engine.dispose()
    confirmed = summary.confirmed if summary.all_confirmed else 0
    return LinkRun(elapsed, confirmed, proxy.requests, proxy.wire_up, proxy.wire_down)


def concurrent_rate(db_url: str, db_dir: Path, kits: int, per_kit: int) -> tuple[float, int, int]:
    """Records per second while ``kits`` kits sync at once; errors; records the server holds."""
    with server_process("_sync_server.py", db_url) as url:
        engines = []
        credentials = []
        for i in range(kits):
            kit_id = f"kit-bench-{i:02d}"
            credentials.append(enroll(db_url, url, kit_id))
            engine = kit_engine(db_dir / f"{kit_id}.sqlite3")
            queue(engine, visits(kit_id, per_kit))
            engines.append(engine)
        barrier = threading.Barrier(kits + 1)
        summaries: list[SyncSummary] = []
        lock = threading.Lock()

        def relay(i: int) -> None:
            barrier.wait()
            summary = sync_outbox(engines[i], credentials[i])
            with lock:
                summaries.append(summary)

        threads = [threading.Thread(target=relay, args=(i,)) for i in range(kits)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        for engine in engines:
            engine.dispose()
    errors = sum(
        len(s.set_aside) + len(s.conflicts) + s.still_unsent + int(s.last_error is not None)
        for s in summaries
    )
    confirmed = sum(s.confirmed for s in summaries)
    return confirmed / elapsed, errors, count_records(db_url)


def bare_rate(db_url: str, n: int) -> float:
    """Rows per second, one commit each, straight through the driver on one connection:
    what the database alone does for per-record commits of the same payloads."""
    import json

    rows = [(str(r["record_id"]), json.dumps(r, sort_keys=True)) for r in visits("kit-bare", n)]
    create = "CREATE TABLE bare (record_id TEXT PRIMARY KEY, payload TEXT NOT NULL)"
    if db_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(create)
        start = time.perf_counter()
        for row in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bare VALUES (?, ?)", row)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
        return n / elapsed
    import psycopg

    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as pg:
        pg.execute(create)
        pg.commit()
        start = time.perf_counter()
        for row in rows:
            pg.execute("INSERT INTO bare VALUES (%s, %s)", row)
            pg.commit()
        elapsed = time.perf_counter() - start
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=2000)
    parser.add_argument("--kits", type=int, default=20)
    parser.add_argument("--per-kit", type=int, default=500)
    parser.add_argument("--markdown", action="store_true", help="print a table for the README")
    parser.add_argument("--only", choices=["gzip"], help="run only this figure")
    args = parser.parse_args()
    if args.only == "gzip":
        with tempfile.TemporaryDirectory(prefix="popup-kit-bench-") as tmp:
            print_link(args.visits, *slow_link_pair(Path(tmp), args.visits), markdown=args.markdown)
        return

    with tempfile.TemporaryDirectory(prefix="popup-kit-bench-") as tmp:
        work = Path(tmp)
        batched, single, batched_ok, single_ok = batched_vs_single(work, args.visits)
        link = slow_link_pair(work, args.visits)
        total = args.kits * args.per_kit
        rates: dict[str, tuple[float, int, int, float] | None] = {}
        (work / "sqlite").mkdir()
        rates["SQLite"] = (
            *concurrent_rate(
                f"sqlite:///{work / 'sqlite' / 'server.sqlite3'}",
                work / "sqlite",
                args.kits,
                args.per_kit,
            ),
            bare_rate(f"sqlite:///{work / 'sqlite' / 'bare.sqlite3'}", total),
        )
        try:
            with postgres_cluster(fsync=True) as cluster:
                (work / "pg").mkdir()
                rates["PostgreSQL"] = (
                    *concurrent_rate(
                        create_database(cluster), work / "pg", args.kits, args.per_kit
                    ),
                    bare_rate(create_database(cluster), total),
                )
        except PostgresUnavailable as exc:
            print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
            rates["PostgreSQL"] = None

    ratio = single / batched
    n = args.visits

    def ok(good: bool) -> str:
        return "✓" if good else "✗"

    lines = [
        "| what | figure | baseline in the same run | ratio | target |",
        "|---|---|---|---|---|",
        f"| {n:,} visits through a proxy adding {PROXY_DELAY * 1000:.0f} ms per request, "
        f"sync client (batches of 200) | {batched:.2f} s, {batched_ok:,} confirmed | one "
        f"record per request: {single:.1f} s, {single_ok:,} confirmed | {ratio:.0f}x faster | "
        f"≥ {TARGET_RATIO:.0f}x {ok(ratio >= TARGET_RATIO)}, < {TARGET_BATCH_S:.0f} s "
        f"{ok(batched < TARGET_BATCH_S)} |",
    ]
    for name, figures in rates.items():
        if figures is None:
            lines.append(
                f"| server ingest, {args.kits} kits at once, {name} | not run | — | — | — |"
            )
            continue
        rate, errors, held, bare = figures
        good = rate >= TARGET_RATE and errors == 0 and held == total
        lines.append(
            f"| server ingest, {args.kits} kits x {args.per_kit} visits at once, {name} | "
            f"{rate:,.0f} records/s, {errors} errors, {held:,} of {total:,} stored | bare "
            f"driver insert + commit per row, one connection: {bare:,.0f} rows/s | "
            f"{rate / bare:.2f} | ≥ {TARGET_RATE:,.0f}/s, 0 errors {ok(good)} |"
        )
    print(f"{n} visits, proxy +{PROXY_DELAY * 1000:.0f} ms/request:")
    print(f"  sync client        {batched:8.2f} s   ({batched_ok} confirmed)")
    print(f"  one per request    {single:8.2f} s   ({single_ok} confirmed)")
    print(
        f"  ratio              {ratio:8.1f} x   target >= {TARGET_RATIO:.0f}x, < {TARGET_BATCH_S} s"
    )
    for name, figures in rates.items():
        if figures is None:
            print(f"{name}: not run")
            continue
        rate, errors, held, bare = figures
        print(
            f"{args.kits} kits x {args.per_kit} visits at once, {name}: {rate:,.0f} records/s, "
            f"{errors} errors, {held} of {total} stored (target >= {TARGET_RATE:.0f}/s, 0 errors)"
        )
        print(
            f"  baseline: bare insert + commit per row {bare:,.0f} rows/s, ratio {rate / bare:.2f}"
        )
    if args.markdown:
        print()
        print("\n".join(lines))
    print()
    print_link(args.visits, *link, markdown=args.markdown)


def slow_link_pair(db_dir: Path, n: int) -> tuple[LinkRun, LinkRun, LinkRun]:
    """Plain, then gzip, then gzip with no link limits (what is not the link's doing),
    each with its own fresh server database."""
    plain = over_slow_link(db_dir, n, compress=False)
    zipped = over_slow_link(db_dir, n, compress=True)
    unlimited = over_slow_link(db_dir, n, compress=True, limited=False)
    return zipped, plain, unlimited


def print_link(n: int, zipped: LinkRun, plain: LinkRun, unlimited: LinkRun, markdown: bool) -> None:
    ratio = plain.seconds / zipped.seconds
    wire = (plain.up + plain.down) / (zipped.up + zipped.down)
    link = f"{SLOW_LINK * 8 / 1e6:.0f} Mbit/s each way, {SLOW_RTT * 1000:.0f} ms round trips"
    print(f"{n} visits through a proxy limited to {link}:")
    for label, run in (("gzip", zipped), ("plain", plain)):
        print(
            f"  {label:<6} {run.seconds:8.2f} s   {run.confirmed} confirmed, {run.requests} "
            f"requests, {run.up / 1e3:,.0f} kB up, {run.down / 1e3:,.0f} kB down"
        )
    good = "✓" if ratio >= TARGET_GZIP_RATIO and zipped.confirmed == n else "✗"
    print(f"  ratio  {ratio:8.2f} x   target >= {TARGET_GZIP_RATIO:.0f}x {good}")
    print(f"  bytes on the wire, plain / gzip: {wire:.2f} x")
    print(
        f"  the gzip sync with no link limit or delay: {unlimited.seconds:.2f} s (server and "
        "kit work, the same in both)"
    )
    if markdown:
        print()
        print(
            f"| {n:,} visits through a proxy limited to {link}, sync client with gzip | "
            f"{zipped.seconds:.1f} s, {zipped.confirmed:,} confirmed; {zipped.up / 1e3:,.0f} kB "
            f"up, {zipped.down / 1e3:,.0f} kB down | the same client, plain: "
            f"{plain.seconds:.1f} s, {plain.confirmed:,} confirmed; {plain.up / 1e3:,.0f} kB "
            f"up, {plain.down / 1e3:,.0f} kB down | {ratio:.1f}x faster | "
            f"≥ {TARGET_GZIP_RATIO:.0f}x {good} |"
        )
        print(
            f"| the same, bytes on the wire | {(zipped.up + zipped.down) / 1e3:,.0f} kB | "
            f"{(plain.up + plain.down) / 1e3:,.0f} kB | {wire:.1f}x fewer | — |"
        )
        print(
            f"| the gzip sync with no link limit or delay | {unlimited.seconds:.1f} s | — | — | — |"
        )


if __name__ == "__main__":
    main()

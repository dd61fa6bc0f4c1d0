"""The four KPIs over many referrals on PostgreSQL (target: 100,000 under 2 s).

Seeded by bulk insert in the shapes the ingest and the event API write: a visit and its
consent per referral in the record table, attempts and decisions in referral_event,
call-back requests, and week-2 follow-up responses (the triggers note each in kpi_stale,
as they do for the real writes), then analysed as autovacuum would. Times, beside the
same with 1,000 referrals in the same run:
- the first reading, which works out every referral's facts in one pass (as after the
  migration that made kpi_fact);
- `kpis.compute` on new connections (cold) and again (warm, the median);
- `kpis.compute` after 150 more referrals and their log arrive (an evening of one booth's
  size, spread over the five), which first works out those referrals' facts.
Beside each wall time, the CPU seconds of this process and of its PostgreSQL backends: on
a shared machine they say how much of the wall time was work. It then checks that the
facts read from kpi_fact are those worked out from the records and the log.

Usage: uv run python bench/kpis.py [--referrals 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, text

from sync.server import kpis, visit_facts
from sync.server import worklist as wl
from sync.server.store import ServerStore, iso
from tests.support.pg import create_database, postgres_cluster
from tests.sync.clinic_support import NOW, run_clinic

TARGET_S = 2.0
BOOTHS = [f"booth-{i}" for i in range(5)]
LEVELS = ("emergency", "urgent", "urgent", "routine", "routine", "routine", "self_care")
RECORD = (
    "INSERT INTO record (record_id, kit_id, record_type, schema_version, content_hash, "
    "created_at, received_at, signature, visit_id, visit_version, referral_code, payload, "
    "body, digest) VALUES (:r, :k, :t, 2, :h, :c, :ra, 'x', :v, :vv, :code, '{}', :b, :dg)"
)
EVENT = (
    "INSERT INTO referral_event (kit_id, referral_code, kind, at, recorded_at, user_name, "
    "data) VALUES (:k, :c, :kind, :at, :at, 'bench', :d)"
)
CALLBACK = (
    "INSERT INTO callback_request (kit_id, referral_code, window_start, window_end, "
    "deadline, phone, created_at) VALUES (:k, :c, :ws, :we, :we, NULL, :ws)"
)
FOLLOWUP = (
    'INSERT INTO followup_response (kit_id, referral_code, "window", submitted_at, answers, '
    "warning, superseded_at) VALUES (:k, :c, 'w2', :at, :a, :w, NULL)"
)


def seed(store: ServerStore, n: int, chunk: int = 5000, first: int = 0) -> None:
    if first == 0:
        for kit in BOOTHS:
            store.create_enrollment(kit)
    for start in range(first, first + n, chunk):
        rows: dict[str, list[dict[str, Any]]] = {RECORD: [], EVENT: [], CALLBACK: [], FOLLOWUP: []}
        for i in range(start, min(first + n, start + chunk)):
            _one(i, rows)
        with store.engine.begin() as conn:
            for sql, params in rows.items():
                if params:
                    conn.execute(text(sql), params)


def _one(i: int, rows: dict[str, list[dict[str, Any]]]) -> None:
    kit = BOOTHS[i % len(BOOTHS)]
    visit_id = str(uuid.uuid4())
    code = f"{i:06X}-{uuid.uuid4().hex[:6].upper()}"
    visit_at = NOW - timedelta(days=30) + timedelta(minutes=(i * 7) % (30 * 24 * 60))
    level = LEVELS[i % len(LEVELS)]
    rules = ["EM1"] if level == "emergency" and i % 3 == 0 else ["RO1"]
    at = iso(visit_at)
    visit = {
        "sharing": "referral",
        "consent": {"c2": True, "c3": True, "c4": True},
        "booth": {"name": kit, "event": f"evening {i % 20}", "emergency_number": "999"},
        "visit_id": visit_id,
        "version": 1,
        "status": "active",
        "referral_code": code,
        "visit_created_at": at,
        "created_at": at,
        "language": "en",
        "answers": {"age_years": 20 + i % 60, "pain_nrs": 3 + i % 8, "leg_pain_nrs": i % 11},
        "outcome": {"triage": level, "rules": rules, "ruleset_version": "2026.11-1"},
        "contact": {"name": "Sam", "phone": f"+44 7700 9{i % 100000:05d}"},
    }
    consent = {"visit_id": visit_id, "items": {"c1": True, "c2": True, "c3": True}}
    for record_type, body, version in (("consent", consent, None), ("visit", visit, 1)):
        rows[RECORD].append(
            {
                "r": str(uuid.uuid4()),
                "k": kit,
                "t": record_type,
                "h": "0" * 64,
                "c": at,
                "ra": iso(visit_at + timedelta(minutes=20)),
                "v": visit_id,
                "vv": version,
                "code": code if record_type == "visit" else None,
                "b": json.dumps(body),
                # As the ingest writes it.
                "dg": visit_facts.digest(record_type, body),
            }
        )

    def event(kind: str, hours: float, **data: Any) -> None:
        rows[EVENT].append(
            {
                "k": kit,
                "c": code,
                "kind": kind,
                "at": iso(visit_at + timedelta(hours=hours)),
                "d": json.dumps(data, sort_keys=True),
            }
        )

    if level == "self_care":
        ws = visit_at + timedelta(hours=20)
        rows[CALLBACK].append(
            {"k": kit, "c": code, "ws": iso(ws), "we": iso(ws + timedelta(hours=2))}
        )
    if i % 10 != 0:  # one in ten is never reached
        event("attempt", 1 + i % 5, result="no_answer", note="")
        reached = 2 + i % 60
        event("attempt", reached, result="reached", note="")
        if level in ("emergency", "urgent") and i % 2 == 0:
            arranged = iso(visit_at + timedelta(hours=reached + 1))
            event(
                "decision",
                reached + 1,
                decision="urgent_in_person",
                escalation_arranged_at=arranged,
                note="",
            )
        else:
            event("decision", reached, decision="advice", note="")
    if i % 3 != 0 and NOW - visit_at > timedelta(days=11):
        answers = {"pain_nrs": i % 8, "leg_pain_nrs": (i * 3) % 11, "global_change": "much_better"}
        rows[FOLLOWUP].append(
            {
                "k": kit,
                "c": code,
                "at": iso(visit_at + timedelta(days=12)),
                "a": json.dumps(answers),
                "w": int(i % 97 == 0),
            }
        )


Timed = tuple[float, float, float]  # wall, this process's CPU, PostgreSQL's CPU


def _backend_cpu(pids: set[int]) -> dict[int, float]:
    """CPU seconds of each live backend (those gone since are left out)."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def _timed(store: ServerStore, pids: set[int], work: Any) -> tuple[Timed, Any]:
    backend, cpu, started = _backend_cpu(pids), time.process_time(), time.perf_counter()
    found = work()
    wall = time.perf_counter() - started
    after = _backend_cpu(pids)
    used = sum(t - backend.get(pid, 0.0) for pid, t in after.items())
    return (wall, time.process_time() - cpu, used), found


EVENING = 150


@dataclass
class Run:
    seeded: float
    whole: Timed
    cold: Timed
    warm: Timed
    evening: Timed
    found: kpis.Kpis
    agree: bool


def run(db_url: str, n: int, runs: int) -> Run:
    with run_clinic(db_url) as clinic:
        store = clinic.live.store
        started = time.perf_counter()
        seed(store, n)
        with store.engine.begin() as conn:
            # What autovacuum does within a minute of a bulk load: without statistics the
            # planner takes a kit's 20,000 records for a handful.
            conn.exec_driver_sql("ANALYZE")
        seeded = time.perf_counter() - started
        pids: set[int] = set()

        @event.listens_for(store.engine, "connect")
        def _backend(dbapi: Any, _: Any) -> None:
            cursor = dbapi.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            pids.add(cursor.fetchone()[0])
            cursor.close()

        store.engine.dispose()
        whole, _ = _timed(store, pids, lambda: kpis.refresh(store))
        store.engine.dispose()

        def compute() -> kpis.Kpis:
            return kpis.compute(store, wl.Deadlines())

        cold, found = _timed(store, pids, compute)
        warm = sorted((_timed(store, pids, compute)[0] for _ in range(runs)), key=lambda t: t[0])
        seed(store, EVENING, first=n)
        evening, found = _timed(store, pids, compute)
        key = lambda r: (r.kit_id, r.code)  # noqa: E731
        agree = sorted(kpis.referrals(store, wl.Deadlines()), key=key) == sorted(
            kpis.source_referrals(store, wl.Deadlines()), key=key
        )
        return Run(seeded, whole, cold, warm[len(warm) // 2], evening, found, agree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--referrals", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with postgres_cluster(fsync=True) as cluster:
        big = run(create_database(cluster), args.referrals, args.runs)
        small = run(create_database(cluster), args.baseline, args.runs)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"KPIs on PostgreSQL, {when}; seeded {args.referrals:,} referrals in {big.seeded:.0f} s")
    print("| what | figure | baseline in the same run | ratio | target |")
    print("|---|---|---|---|---|")
    for name, mine, theirs, target in (
        ("every fact worked out (first reading)", big.whole, small.whole, False),
        ("four KPIs, cold", big.cold, small.cold, True),
        ("four KPIs, warm (median)", big.warm, small.warm, True),
        (f"four KPIs after an evening ({EVENING} more)", big.evening, small.evening, True),
    ):
        ok = ("✓" if mine[0] <= TARGET_S else "✗") if target else ""
        print(
            f"| {name}, {args.referrals:,} referrals | {mine[0]:.2f} s "
            f"(CPU: Python {mine[1]:.2f} s, PostgreSQL {mine[2]:.2f} s) | "
            f"{args.baseline:,} referrals: {theirs[0]:.3f} s | {mine[0] / theirs[0]:.0f}x | "
            + (f"≤ {TARGET_S:.0f} s {ok} |" if target else "- |")
        )
    print(f"kpi_fact agrees with the records and the log: {big.agree and small.agree}")
    for k in big.found.as_json():
        k.pop("breaches", None)
        print(json.dumps(k))


if __name__ == "__main__":
    main()

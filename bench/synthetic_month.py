"""A synthetic month of pop-up booths, built through the real parts: 5 booths x 20
evenings x 150 visits, each booth an enrolled kit sending signed records to a real server
on a loopback port (the ingest), contacts and decisions through the worklist's event API
(record_event), call-back requests through the booking functions, and week-2 follow-up
responses in the shared follow-up schema. Rates are drawn from a seeded RNG. Prints the
counts, the ingest's records/s and the four KPIs.

Usage: uv run python bench/synthetic_month.py [--scale 1.0] [--seed 11] [--db URL]
(default database: a temporary SQLite file; --db postgresql+psycopg://... for PostgreSQL)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.server import kpis
from sync.server import worklist as wl
from sync.server.bookings import Bookings
from tests.sync.clinic_support import NOW, Clinic, referral_records, run_clinic
from tests.sync.kpi_month import respond
from tests.sync.live_server import EnrolledKit, enroll_kit, ingest

BOOTHS = ("harbour", "market", "library", "station", "campus")
# Share of visits at each level (the rest self-care) and of C2 refused at the booth.
LEVEL_RATES = (("emergency", 0.02), ("urgent", 0.08), ("routine", 0.35))
C2_REFUSED = 0.10
CALLBACK_SELF_CARE = 0.15
ROUTINE_BOOKS = 0.5  # a routine referral that books a call slot from its slip
REACHED = 0.88  # a referral needing contact that is reached in the end
ESCALATE = {"emergency": 0.7, "urgent": 0.4, "routine": 0.05, "self_care": 0.02}
ESCALATED_LATER = 0.03
W2_RESPONSE = 0.55
W2_WARNING = 0.01
BATCH = 100


def _level(rng: random.Random) -> str:
    draw = rng.random()
    for level, rate in LEVEL_RATES:
        if draw < rate:
            return level
        draw -= rate
    return "self_care"


def build(clinic: Clinic, scale: float, rng: random.Random) -> Counter[str]:
    store = clinic.live.store
    bookings = Bookings(store.engine, clock=clinic.clock)
    counts: Counter[str] = Counter()
    evenings = max(1, round(20 * scale))
    per_evening = max(1, round(150 * scale))
    kits: dict[str, EnrolledKit] = {b: enroll_kit(clinic.live) for b in BOOTHS}
    # The clinicians' published calls: 10:00 and 15:00 every day, weekly, from before the
    # first evening to after the last routine deadline.
    first_day = (NOW - timedelta(days=49)).replace(hour=10, minute=0, second=0, microsecond=0)
    for day in range(7):
        for hour in (0, 5):
            start = first_day + timedelta(days=day, hours=hour)
            bookings.add_slots(start, 20, 12, weeks=9, zone=ZoneInfo("UTC"))
    made: list[tuple[str, str, str, Any, bool]] = []
    ingest_s = 0.0
    for evening in range(evenings):
        start = NOW - timedelta(days=48) + timedelta(days=evening * 1.5, hours=6)
        for booth, kit in kits.items():
            batch: list[dict[str, Any]] = []
            for n in range(per_evening):
                visit_at = start + timedelta(minutes=n * 240 / per_evening)
                level = _level(rng)
                c2 = rng.random() >= C2_REFUSED
                code = f"{booth[:2].upper()}{evening:02d}-{n:04d}-{rng.randrange(16**4):04X}"
                back = rng.randint(2, 9)
                leg = rng.randint(2, 9) if rng.random() < 0.5 else None
                answers: dict[str, Any] = {"age_years": rng.randint(18, 85), "pain_nrs": back}
                answers["leg_pain_side"] = "none" if leg is None else "unilateral"
                if leg is not None:
                    answers["leg_pain_nrs"] = leg
                # Suspected cauda equina: about a third of emergencies, a fifth of urgents.
                ces = rng.random() < (0.35 if level == "emergency" else 0.2)
                rules = {
                    "emergency": ("EM1",) if ces else ("EM3",),
                    "urgent": ("UR1",) if ces else ("UR4",),
                    "routine": ("RO1",),
                }
                batch += referral_records(
                    kit.kit_id,
                    code,
                    level=level,
                    visit_at=visit_at,
                    c2=c2,
                    rules=rules.get(level, ()),
                    booth=booth,
                    event=f"evening {evening + 1}",
                    answers=answers,
                )
                counts["visits"] += 1
                counts[f"level {level}"] += 1
                if c2:
                    made.append((kit.kit_id, code, level, (visit_at, back, leg), leg is not None))
                else:
                    counts["C2 refused"] += 1
            for at in range(0, len(batch), BATCH):
                started = time.perf_counter()
                response = ingest(clinic.live, kit, batch[at : at + BATCH])
                ingest_s += time.perf_counter() - started
                response.raise_for_status()
                counts["records"] += len(batch[at : at + BATCH])
    counts["ingest ms"] = round(ingest_s * 1000)
    for kit_id, code, level, (visit_at, back, leg), _ in made:
        _follow(store, bookings, clinic, rng, counts, kit_id, code, level, visit_at, back, leg)
    clinic.clock.now = NOW
    return counts


def _follow(
    store: Any,
    bookings: Bookings,
    clinic: Clinic,
    rng: random.Random,
    counts: Counter[str],
    kit_id: str,
    code: str,
    level: str,
    visit_at: Any,
    back: int,
    leg: int | None,
) -> None:
    def log(kind: str, hours: float, **data: Any) -> None:
        wl.record_event(store, kit_id, code, kind, "synthetic", data, at=at(hours))
        counts[f"event {kind}"] += 1

    def at(hours: float) -> Any:
        return min(NOW, visit_at + timedelta(hours=hours))

    callback = level == "self_care" and rng.random() < CALLBACK_SELF_CARE
    if callback:
        clinic.clock.now = visit_at + timedelta(minutes=30)
        start = visit_at + timedelta(hours=rng.choice((16, 18, 40)))
        bookings.request_callback(kit_id, code, (start, start + timedelta(hours=2)), start, None)
        clinic.clock.now = NOW
        counts["call-back requests"] += 1
    if level == "self_care" and not callback:
        return
    if level == "routine" and rng.random() < ROUTINE_BOOKS:
        # From the slip's page half an hour after the visit: the first free call in 7 days.
        clinic.clock.now = visit_at + timedelta(minutes=30)
        free = bookings.free_slots(visit_at + timedelta(days=7))
        if free:
            held = bookings.hold(kit_id, code, free[0].slot_id, visit_at + timedelta(days=7))
            if held == "held" and bookings.confirm(kit_id, code, None):
                counts["bookings"] += 1
        clinic.clock.now = NOW
    hours = {"emergency": 0.5, "urgent": 6.0, "routine": 48.0, "self_care": 17.0}[level]
    first = rng.expovariate(1 / hours)
    for _ in range(rng.randint(0, 2)):
        log("attempt", first, result="no_answer")
        first += rng.uniform(1, hours)
    if rng.random() >= REACHED:
        return
    log("attempt", first, result="reached")
    if rng.random() < ESCALATE[level]:
        log(
            "decision",
            first,
            decision=rng.choice(sorted(wl.ESCALATED)),
            escalation_arranged_at=at(first + rng.uniform(0, 3)),
        )
        return
    log("decision", first, decision=rng.choice(sorted(wl.CONSERVATIVE)))
    if rng.random() < W2_RESPONSE and visit_at + timedelta(days=13) < NOW:
        warning = rng.random() < W2_WARNING
        fall = rng.choice((0, 1, 2, 3, 4))
        respond(
            store,
            kit_id,
            code,
            visit_at + timedelta(days=rng.uniform(11, 13)),
            back=max(0, back - fall),
            leg=None if leg is None else max(0, leg - fall),
            warning=warning,
        )
        counts["w2 responses"] += 1
        if warning:
            log(
                "decision",
                24 * 13 + 2,
                decision="emergency_department",
                escalation_arranged_at=at(24 * 13 + 3),
            )
    elif rng.random() < ESCALATED_LATER:
        log("decision", 24 * 20, decision="specialist", escalation_arranged_at=at(24 * 20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink evenings and visits")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp()}/month.sqlite3"
    started = time.perf_counter()
    with run_clinic(url) as clinic:
        counts = build(clinic, args.scale, random.Random(args.seed))
        built = time.perf_counter() - started
        found = kpis.compute(clinic.live.store, wl.Deadlines())
    ms = counts.pop("ingest ms")
    for name, value in sorted(counts.items()):
        print(f"{name}: {value:,}")
    print(
        f"ingest: {counts['records']:,} signed records in {ms / 1000:.1f} s = "
        f"{counts['records'] / max(ms / 1000, 1e-9):,.0f} records/s; whole build {built:.0f} s"
    )
    for k in found.as_json():
        k.pop("breaches", None)
        print(json.dumps(k))


if __name__ == "__main__":
    main()

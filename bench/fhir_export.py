"""The FHIR R4 export of a synthetic month (bench/synthetic_month.py, built through the
real ingest, event API and follow-up table), timed, then every line of every file checked
against the vendored HL7 R4 JSON schema (errors must be 0). Baseline: the same at a tenth
of the scale in the same run.

Usage: uv run python bench/fhir_export.py [--scale 1.0] [--baseline 0.1] [--seed 11]
[--db sqlite|postgres] [--runs 3]
(postgres: a throwaway cluster started as the tests start it, fsync on)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jsonschema_rs
from sqlalchemy import text

from bench.synthetic_month import build
from sync.server.export import export_fhir
from tests.sync.clinic_support import run_clinic

SCHEMA = Path(__file__).resolve().parent.parent / "tests" / "fhir" / "fhir.schema.json"


@dataclass(frozen=True)
class Run:
    visits: int
    records: int  # visit and consent records the export reads
    referrals: int  # shared referrals exported (one Patient each)
    resources: dict[str, int]
    export_s: float  # median of the runs
    validate_s: float
    errors: int

    @property
    def total(self) -> int:
        return sum(self.resources.values())


@contextmanager
def database(kind: str) -> Iterator[Iterator[str]]:
    if kind == "postgres":
        from tests.support.pg import create_database, postgres_cluster

        with postgres_cluster(fsync=True) as cluster:
            yield (create_database(cluster) for _ in iter(int, 1))
    else:
        folder = Path(tempfile.mkdtemp())
        yield (f"sqlite:///{folder / f'month-{n}.sqlite3'}" for n in range(1_000_000))


def one(url: str, scale: float, seed: int, runs: int) -> Run:
    validator = jsonschema_rs.Draft6Validator(json.loads(SCHEMA.read_text("utf-8")))
    out = Path(tempfile.mkdtemp()) / "export"
    with run_clinic(url) as clinic:
        counts = build(clinic, scale, random.Random(seed))
        engine = clinic.live.store.engine
        with engine.connect() as conn:
            records = conn.execute(
                text("SELECT COUNT(*) FROM record WHERE record_type IN ('visit', 'consent')")
            ).scalar_one()
        times, written = [], {}
        for _ in range(runs):
            started = time.perf_counter()
            written = export_fhir(engine, out)
            times.append(time.perf_counter() - started)
    started = time.perf_counter()
    errors = 0
    for path in sorted(out.glob("*.ndjson")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                errors += sum(1 for _ in validator.iter_errors(json.loads(line)))
    validate_s = time.perf_counter() - started
    return Run(
        visits=counts["visits"],
        records=int(records),
        referrals=written["Patient"],
        resources=written,
        export_s=sorted(times)[len(times) // 2],
        validate_s=validate_s,
        errors=errors,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--baseline", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=3, help="exports per month (median)")
    args = parser.parse_args()
    with database(args.db) as urls:
        big = one(next(urls), args.scale, args.seed, args.runs)
        small = one(next(urls), args.baseline, args.seed, args.runs)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"FHIR export of a synthetic month on {args.db}, {when}")
    print(f"scale {args.scale}: {big.visits:,} visits; resources {json.dumps(big.resources)}")
    print("| what | figure | baseline in the same run | ratio |")
    print("|---|---|---|---|")
    rows = (
        ("export, records read/s", big.records / big.export_s, small.records / small.export_s),
        (
            "export, shared referrals/s",
            big.referrals / big.export_s,
            small.referrals / small.export_s,
        ),
        ("export, resources written/s", big.total / big.export_s, small.total / small.export_s),
    )
    for name, fig, base in rows:
        print(
            f"| {name} | {fig:,.0f}/s | scale {args.baseline}: {base:,.0f}/s | {fig / base:.2f} |"
        )
    for name, fig, base in (
        ("export time (median)", big.export_s, small.export_s),
        ("schema validation of every line", big.validate_s, small.validate_s),
    ):
        print(f"| {name} | {fig:.2f} s | scale {args.baseline}: {base:.2f} s | {fig / base:.1f}x |")
    print(
        f"| schema errors | {big.errors} in {big.total:,} resources | "
        f"{small.errors} in {small.total:,} | - |"
    )
    if big.errors or small.errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

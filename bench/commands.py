"""The coordinator's commands as whole processes, on a store of many events against an empty
store, in the same run.

A store of ``--visits`` visits (default 30,000) is seeded once: a few hundred real visits
through the visit service, then copied day by day back in time with fresh ids and referral
codes, nine in ten of them confirmed by the centre. Each command then runs ``--runs`` times
as its own process (``popup-kit ...``), so imports, the store's opening and the output all
count, exactly as the coordinator waits for them.

Usage: uv run python bench/commands.py [--visits N] [--runs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (arguments, target seconds on the full store or None)
COMMANDS: list[tuple[list[str], float | None]] = [
    (["--help"], 0.3),
    (["info", "--json"], 0.3),
    (["screen", "--json", "--answers", "{answers}"], 0.3),
    (["report", "--json"], 2.0),
    (["report", "--json", "--date", "all"], 2.0),
    (["visits", "--json"], None),
    (["summary"], None),
]
SEED_REAL = 300
# The store is encrypted; the commands derive its key (Argon2id at the kit's strength).
PASSPHRASE = "bench passphrase, not a secret"


def seed(data_dir: Path, visits: int) -> None:
    """Fill ``data_dir``'s store with ``visits`` visits spread over past days."""
    env_before = dict(os.environ)
    os.environ["POPUP_KIT_DATA_DIR"] = str(data_dir)
    os.environ["POPUP_KIT_PASSPHRASE"] = PASSPHRASE
    os.environ.pop("POPUP_KIT_CONFIG", None)
    os.environ.pop("POPUP_KIT_TEST_CHEAP_KDF", None)
    import sync.sqlite

    # Seeding only: the measured commands open the store with the kit's own settings.
    sync.sqlite.PRAGMAS = tuple(
        "synchronous=OFF" if p.startswith("synchronous") else p for p in sync.sqlite.PRAGMAS
    )
    from sqlalchemy import text

    from popup_kit.config import load_config
    from popup_kit.services import VisitService
    from printouts.codes import new_referral_code
    from tests.kit.conftest import visit_input, with_contact

    service = VisitService(load_config())
    real = min(SEED_REAL, visits)
    for i in range(real):
        service.record_visit(with_contact() if i % 2 else visit_input())
    copies = -(-visits // real) - 1
    engine = service.store.write_engine
    with engine.begin() as conn:

        def columns(table: str) -> list[str]:
            return [r[1] for r in conn.execute(text(f"PRAGMA table_info({table})"))]

        remaining = visits - real
        for k in range(1, copies + 1):
            take = min(real, remaining)
            remaining -= take
            shift = f"'-{k} days'"
            suffix = f"'.{k}'"
            when = f"strftime('%Y-%m-%dT%H:%M:%f000Z', {{c}}, {shift})"
            base = f"(SELECT visit_id FROM visit WHERE visit_id NOT LIKE '%.%' LIMIT {take})"
            renamed = {
                "visit_id": f"visit_id || {suffix}",
                "record_id": f"record_id || {suffix}",
                "consent_id": f"consent_id || {suffix}",
                "supersedes": f"supersedes || {suffix}",
                "referral_code": f"referral_code || {suffix}",
                "created_at": when.format(c="created_at"),
                "at": when.format(c="at"),
                "sent_at": when.format(c="sent_at"),
                "confirmed_at": when.format(c="confirmed_at"),
            }
            for table in ("visit", "visit_version", "consent_event", "outbox", "audit"):
                cols = [c for c in columns(table) if c != "id"]
                exprs = [renamed.get(c, c) for c in cols]
                conn.execute(
                    text(
                        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
                        f"FROM {table} WHERE visit_id IN {base}"
                    )
                )
        # Fresh valid codes for the copies, and most of the past confirmed by the centre.
        ids = [
            r[0] for r in conn.execute(text("SELECT visit_id FROM visit WHERE visit_id LIKE '%.%'"))
        ]
        conn.execute(
            text("UPDATE visit SET referral_code = :c WHERE visit_id = :v"),
            [{"c": new_referral_code(), "v": v} for v in ids],
        )
        conn.execute(
            text(
                "UPDATE outbox SET state = 'confirmed', sent_at = created_at, "
                "confirmed_at = created_at WHERE visit_id LIKE '%.%' AND abs(random()) % 10 != 0"
            )
        )
    service.close()
    os.environ.clear()
    os.environ.update(env_before)


def time_command(args: list[str], data_dir: Path, runs: int, answers: Path) -> list[float]:
    args = [a.format(answers=answers) for a in args]
    env = dict(os.environ, POPUP_KIT_DATA_DIR=str(data_dir), POPUP_KIT_PASSPHRASE=PASSPHRASE)
    env.pop("POPUP_KIT_CONFIG", None)
    env.pop("POPUP_KIT_TEST_CHEAP_KDF", None)
    exe = str(Path(sys.executable).with_name("popup-kit"))
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run([exe, *args], env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):
            raise SystemExit(f"popup-kit {' '.join(args)} failed: {done.stderr.decode()[-400:]}")
    return times[1:]  # the first run warms the page cache


def compile_sources() -> None:
    """Compile the kit's own modules once, as Python does on a booth laptop's first start.
    (Installed libraries are compiled by `uv sync --compile-bytecode`.) Where
    PYTHONDONTWRITEBYTECODE is set, as on the build machines, nothing would be cached and
    every run would pay for compiling them again."""
    import compileall

    for package in ("popup_kit", "forms", "printouts", "sync"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="seed into (or reuse) this folder")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="popup-kit-bench-"))
    empty = work / "empty"
    full = opts.keep or work / "full"
    try:
        if not (full / "popup-kit.sqlite3").exists():
            started = time.perf_counter()
            seed(full, opts.visits)
            print(f"seeded {opts.visits} visits in {time.perf_counter() - started:.1f} s")
        empty.mkdir()
        compile_sources()
        from tests.forms.answers import BENIGN

        answers = work / "answers.json"
        answers.write_text(json.dumps(BENIGN), "utf-8")
        print(f"{'command':<34}{'empty s':>9}{'full s':>9}{'ratio':>7}{'target':>8}  verdict")
        for args, target in COMMANDS:
            e = statistics.median(time_command(args, empty, opts.runs, answers))
            f = statistics.median(time_command(args, full, opts.runs, answers))
            verdict = "-" if target is None else ("ok" if f <= target else "OVER")
            shown = "-" if target is None else f"{target:.1f}"
            name = " ".join(args).replace("{answers}", "FILE")
            print(f"{name:<34}{e:>9.3f}{f:>9.3f}{f / e:>7.2f}{shown:>8}  {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

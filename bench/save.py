"""Visit save latency with synchronous=FULL, the store encrypted: the whole save
(validation, triage, code, visit + version + consent + two outbox rows + audit, one
transaction) against a bare sqlite3 insert and a bare SQLCipher insert (raw 256-bit key,
as the kit keys its store) of the same payload in the same kind of file (WAL,
synchronous=FULL, one fsync'd transaction each), in the same run.
Usage: uv run python bench/save.py [--visits N]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_P99_MS = 20.0
PASSPHRASE = "market morning passphrase"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def kit_saves(count: int, data_dir: str) -> list[float]:
    os.environ["POPUP_KIT_DATA_DIR"] = data_dir
    os.environ.pop("POPUP_KIT_CONFIG", None)
    # a booth's store: created with this passphrase, its key derived at full strength
    os.environ["POPUP_KIT_PASSPHRASE"] = PASSPHRASE
    os.environ.pop("POPUP_KIT_TEST_CHEAP_KDF", None)
    from popup_kit.config import load_config
    from popup_kit.services import VisitService
    from popup_kit.store.keys import key_path
    from tests.kit.conftest import visit_input, with_contact

    config = load_config()
    service = VisitService(config)
    if not key_path(config.db_path).exists():
        raise SystemExit("the kit's store is not encrypted")
    inputs = [with_contact() if i % 2 else visit_input() for i in range(count)]
    service.record_visit(inputs[0])  # warm: imports, first page allocations
    times = []
    for visit in inputs:
        started = time.perf_counter()
        service.record_visit(visit)
        times.append(time.perf_counter() - started)
    service.close()
    return times


def bare_saves(count: int, data_dir: str, *, encrypted: bool) -> list[float]:
    from tests.forms.answers import BENIGN

    if encrypted:
        import sqlcipher3.dbapi2

        path = Path(data_dir) / "bare-sqlcipher.sqlite3"
        conn: sqlite3.Connection = sqlcipher3.dbapi2.connect(str(path), isolation_level=None)
        conn.execute(f"PRAGMA key = \"x'{secrets.token_hex(32)}'\"")
    else:
        conn = sqlite3.connect(Path(data_dir) / "bare.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    payload = json.dumps({"answers": BENIGN, "language": "en", "volunteer": "AB"})
    times = []
    for _ in range(count):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO visit (payload) VALUES (?)", (payload,))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - started)
    conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        bare = bare_saves(args.visits, data_dir, encrypted=False)
        cipher = bare_saves(args.visits, data_dir, encrypted=True)
        kit = kit_saves(args.visits, data_dir)
        if b"SQLite format 3" in (Path(data_dir) / "bare-sqlcipher.sqlite3").read_bytes()[:16]:
            raise SystemExit("the bare SQLCipher file is not encrypted")
    kit_median, kit_p99 = statistics.median(kit) * 1000, percentile(kit, 99) * 1000
    bare_median, bare_p99 = statistics.median(bare) * 1000, percentile(bare, 99) * 1000
    ciph_median, ciph_p99 = statistics.median(cipher) * 1000, percentile(cipher, 99) * 1000
    verdict = "meets" if kit_p99 <= TARGET_P99_MS else "MISSES"
    load = os.getloadavg()
    print(f"{args.visits} saves each, synchronous=FULL, WAL; load average {load[0]:.1f}")
    print(f"popup-kit visit save (encrypted): median {kit_median:.1f} ms, p99 {kit_p99:.1f} ms")
    print(f"bare sqlite3 insert:              median {bare_median:.1f} ms, p99 {bare_p99:.1f} ms")
    print(f"bare SQLCipher insert:            median {ciph_median:.1f} ms, p99 {ciph_p99:.1f} ms")
    baselines = (("sqlite3", bare_median, bare_p99), ("SQLCipher", ciph_median, ciph_p99))
    for name, median, p99 in baselines:
        print(f"ratio kit/{name}: median {kit_median / median:.2f}, p99 {kit_p99 / p99:.2f}")
    print(f"p99 target <= {TARGET_P99_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()

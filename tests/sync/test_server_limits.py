"""Limits that lock no one out: a market NAT, a signature guesser, spoofed forwarding headers,
and buckets that hold across server workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from sync.server.limits import Buckets, DatabaseBuckets, TokenBuckets, network_key
from sync.server.settings import ServerSettings
from sync.server.store import ServerStore
from tests.support.ports import free_port
from tests.sync.live_server import (
    LiveServer,
    ManualClock,
    PlainCodes,
    enroll_kit,
    run_server,
)

CODES = PlainCodes()
DEFAULTS = ServerSettings(database_url="unused")


@dataclass
class Made:
    """Buckets in memory or in the database (SQLite and PostgreSQL), on a hand clock."""

    clock: ManualClock
    store: ServerStore | None

    def buckets(self, scope: str, count: int, period: float) -> Buckets:
        if self.store is None:
            return TokenBuckets(count, period, clock=self.clock)
        return DatabaseBuckets(self.store.engine, scope, count, period, clock=self.clock)


@pytest.fixture(params=["memory", "database"])
def made(request: pytest.FixtureRequest, db_url: str) -> Iterator[Made]:
    if request.param == "memory":
        if not db_url.startswith("sqlite"):
            pytest.skip("memory buckets do not depend on the database")
        yield Made(ManualClock(), None)
        return
    store = ServerStore(db_url)
    try:
        yield Made(ManualClock(), store)
    finally:
        store.close()


def test_fifty_attendees_behind_one_nat_are_never_limited(
    made: Made,
) -> None:
    clock = made.clock
    net = made.buckets("network", DEFAULTS.landing_rate_count, DEFAULTS.landing_rate_period)
    nat = network_key("198.51.100.7")
    # A talk ends: 50 people scan their slips within one minute, and each reloads the page
    # four times over the next minute and a half (everyone's requests, in time order).
    times = sorted(i * 1.2 + extra for i in range(50) for extra in (0, 5, 15, 30, 90))
    # Then the rest of a busy evening: 250 more, one every 50 s, each with four reloads.
    times += sorted(200 + i * 50 + extra for i in range(250) for extra in (0, 10, 30, 60, 300))
    refused = []
    for at in sorted(times):
        clock.now = at
        if not net.take(nat):
            refused.append(at)
    assert refused == []
    assert len(times) == 1500


@pytest.mark.slow  # 6,000 takes, each a transaction on the databases: up to 40 s
def test_a_scanner_hammering_codes_is_held_to_a_trickle(
    made: Made,
) -> None:
    clock = made.clock
    net = made.buckets("network", DEFAULTS.landing_rate_count, DEFAULTS.landing_rate_period)
    scanner, neighbour = network_key("203.0.113.9"), network_key("203.0.113.10")
    allowed = 0
    for i in range(6000):  # ten requests a second for ten minutes
        clock.now = i / 10
        allowed += net.take(scanner)
    # The allowance, then one look-up per refill interval (5 s): 240 + 600 s / 5 s, give
    # or take the last partly refilled token.
    assert DEFAULTS.landing_rate_count + 119 <= allowed <= DEFAULTS.landing_rate_count + 120
    assert net.retry_after() == 5
    assert net.take(neighbour)  # another network is untouched


def test_a_code_seeing_wrong_signatures_is_limited_alone(
    made: Made,
) -> None:
    clock = made.clock
    code = made.buckets("code", DEFAULTS.code_attempts_count, DEFAULTS.code_attempts_period)
    assert code.peek("AAAA") and code.peek("BBBB")
    taken = [code.take("AAAA") for _ in range(DEFAULTS.code_attempts_count + 3)]
    assert taken == [True] * DEFAULTS.code_attempts_count + [False] * 3
    assert not code.peek("AAAA") and code.peek("BBBB")
    clock.now += code.retry_after()
    assert code.peek("AAAA") and code.take("AAAA") and not code.peek("AAAA")


def test_database_buckets_keep_no_address_or_code(db_url: str) -> None:
    store = ServerStore(db_url)
    try:
        buckets = DatabaseBuckets(store.engine, "network", 3, 60.0, clock=ManualClock())
        assert buckets.take(network_key("198.51.100.7"))
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT scope, key FROM rate_limit").all()
        assert len(rows) == 1 and rows[0][0] == "network"
        assert "198.51.100" not in rows[0][1] and len(rows[0][1]) == 32
    finally:
        store.close()


def test_buckets_full_again_are_swept_from_the_table(db_url: str) -> None:
    store = ServerStore(db_url)
    try:
        clock = ManualClock()
        buckets = DatabaseBuckets(store.engine, "network", 3, 60.0, clock=clock)
        buckets.PRUNE_EVERY = 5
        for i in range(4):
            buckets.take(f"ip:198.51.100.{i}")
        clock.now = 61.0  # a whole period later: those buckets are full again
        buckets.take("ip:203.0.113.1")  # the fifth take sweeps
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT updated FROM rate_limit").all()
        assert [float(r[0]) for r in rows] == [61.0]
    finally:
        store.close()


def test_networks_are_counted_by_address_and_ipv6_by_64() -> None:
    assert network_key("198.51.100.7") != network_key("198.51.100.8")
    assert network_key("2001:db8:1:2::1") == network_key("2001:db8:1:2:ffff::9")
    assert network_key("2001:db8:1:2::1") != network_key("2001:db8:1:3::1")
    assert network_key("::ffff:198.51.100.7") == network_key("198.51.100.7")


@pytest.fixture
def guarded(db_url: str) -> Iterator[tuple[LiveServer, ManualClock]]:
    clock = ManualClock()
    with run_server(db_url, code_rules=CODES, rate_clock=clock, code_attempts=(5, 600.0)) as server:
        yield server, clock


def test_guessing_a_codes_signature_locks_that_code_only(
    guarded: tuple[LiveServer, ManualClock],
) -> None:
    server, clock = guarded
    kit = enroll_kit(server)
    code, other = "AAAA-BBBB-CCCC", "DDDD-EEEE-FFFF"
    genuine = CODES.sign(code, kit.slip_key)

    def get(c: str, sig: str) -> requests.Response:
        return requests.get(f"{server.url}/r/{c}", params={"s": sig, "l": "es"}, timeout=10)

    guesses = [get(code, f"GUESS{i:05d}").status_code for i in range(7)]
    assert guesses == [404] * 5 + [429] * 2
    locked = get(code, "GUESS99999")
    assert locked.status_code == 429 and locked.headers["Cache-Control"] == "no-store"
    assert locked.headers["Retry-After"] == "120"
    assert 'lang="es"' in locked.text and "Teléfono de emergencias" in locked.text
    # Whoever reads the code off someone's slip cannot lock its holder out: the right
    # signature still opens the page while wrong ones are refused.
    assert get(code, genuine).status_code == 200
    assert get(code, "GUESS99998").status_code == 429
    # Another code, and a missing signature, are not touched by the lock.
    assert get(other, CODES.sign(other, kit.slip_key)).status_code == 200
    assert requests.get(f"{server.url}/r/{code}", timeout=10).status_code == 404
    clock.now += 120
    assert get(code, "GUESS99997").status_code == 404


def test_the_withdrawal_form_is_no_way_round_the_code_limit(
    guarded: tuple[LiveServer, ManualClock],
) -> None:
    server, _clock = guarded
    kit = enroll_kit(server)
    code = "AAAA-BBBB-CCCC"

    def post(sig: str) -> requests.Response:
        return requests.post(
            f"{server.url}/r/{code}/withdraw",
            data={"s": sig, "l": "es", "confirm": "yes"},
            timeout=10,
        )

    statuses = [post(f"GUESS{i:05d}").status_code for i in range(7)]
    assert statuses == [404] * 5 + [429] * 2
    limited = post("GUESS99999")
    assert limited.headers["Retry-After"] == "120" and 'lang="es"' in limited.text
    # The code's page counts the same attempts.
    page = requests.get(f"{server.url}/r/{code}", params={"s": "GUESS99998"}, timeout=10)
    assert page.status_code == 429
    assert post(CODES.sign(code, kit.slip_key)).status_code == 200  # its holder still can


def test_rotating_forwarded_addresses_does_not_dodge_the_code_limit(db_url: str) -> None:
    clock = ManualClock()
    with run_server(
        db_url,
        code_rules=CODES,
        rate_clock=clock,
        code_attempts=(3, 600.0),
        trusted_proxies=["127.0.0.0/8"],
    ) as server:
        code = "AAAA-BBBB-CCCC"
        statuses = [
            requests.get(
                f"{server.url}/r/{code}",
                params={"s": f"GUESS{i:05d}"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
                timeout=10,
            ).status_code
            for i in range(5)
        ]
    assert statuses == [404, 404, 404, 429, 429]


def test_forwarded_for_ignored_from_a_proxy_not_configured(sqlite_url: str) -> None:
    clock = ManualClock()
    with run_server(
        sqlite_url,
        code_rules=CODES,
        rate_clock=clock,
        landing_rate=(3, 60.0),
        trusted_proxies=["10.0.0.0/8"],  # a proxy exists, but the caller is not it
    ) as server:
        statuses = [
            requests.get(
                f"{server.url}/r/NOPE",
                headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Real-IP": f"198.51.100.{i}"},
                timeout=10,
            ).status_code
            for i in range(5)
        ]
    assert statuses == [404, 404, 404, 429, 429]


# --- several workers on PostgreSQL ---------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            inodes.add(fields[9])
    return inodes


def _workers_holding(pids: list[int], port: int) -> int:
    """How many of ``pids`` hold an accepted connection on ``port``."""
    inodes = _established_inodes(port)
    holding = 0
    for pid in pids:
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            holding += 1
    return holding


@pytest.mark.slow  # four server processes started on PostgreSQL
def test_the_limit_counts_once_across_four_workers(tmp_path: Path, pg_cluster: str) -> None:
    from tests.support.pg import create_database

    db = create_database(pg_cluster)
    port = free_port()
    config = tmp_path / "server.toml"
    config.write_text(
        f'database_url = "{db}"\nkey_file = "{tmp_path / "key.pem"}"\nport = {port}\n'
        "workers = 4\nlanding_rate_count = 12\nlanding_rate_period = 36000.0\n"
    )
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "popup_kit", "server", "run", "--config", str(config)],
        stderr=log,
        stdout=log,
    )
    sessions = [requests.Session() for _ in range(24)]
    try:
        deadline = time.monotonic() + 60
        while (tmp_path / "server.log").read_text().count("Application startup complete") < 4:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        # One request per connection, each connection kept open: the kernel hands them to
        # whichever worker accepts, so they spread over the processes.
        statuses = [
            s.get(f"http://127.0.0.1:{port}/r/NOPE", timeout=10).status_code for s in sessions
        ]
        spread = _workers_holding(_children(proc.pid), port)
    finally:
        for s in sessions:
            s.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        log.close()
    assert spread >= 2, "the requests did not reach more than one worker"
    # One allowance for the address, however many workers served it.
    assert statuses == [404] * 12 + [429] * 12


def test_several_workers_on_sqlite_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from popup_kit.cli import main

    config = tmp_path / "server.toml"
    config.write_text('database_url = "server.sqlite3"\n')
    assert main(["server", "run", "--workers", "2", "--config", str(config)]) == 1
    assert "--workers above 1 needs PostgreSQL" in capsys.readouterr().err
    assert not (tmp_path / "server.sqlite3").exists()  # refused before anything is made

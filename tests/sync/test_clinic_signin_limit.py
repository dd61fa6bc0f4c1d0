"""The sign-in attempt limit holds under concurrent attempts (counted and recorded in one
transaction), and expired attempts are pruned as sign-ins happen, a bounded few at a time."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from sync.server.accounts import PRUNE_PER_SIGNIN, Accounts, Policy, SignInRefused
from sync.server.store import iso
from tests.sync.clinic_support import NOW, PASSWORD, run_clinic


def _failures(accounts: Accounts, name: str) -> int:
    with accounts.store.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM signin_attempt WHERE user_name = :n AND ok = 0"),
                {"n": name},
            ).scalar_one()
        )


@pytest.mark.slow
@pytest.mark.parametrize("threads", [8])
def test_concurrent_wrong_passwords_at_the_limit_pass_once(db_url: str, threads: int) -> None:
    with run_clinic(db_url) as clinic:
        accounts = Accounts(clinic.live.store, Policy(failures_per_account=5))
        accounts.add_user("dana", "clinician", PASSWORD)
        for _ in range(4):
            with pytest.raises(SignInRefused, match="wrong name or password"):
                accounts.sign_in("dana", "wrong password!", "10.0.0.1", None)
        start = threading.Barrier(threads)
        answers: list[str] = []
        lock = threading.Lock()

        def guess(i: int) -> None:
            start.wait()
            try:
                accounts.sign_in("dana", f"wrong password {i}", f"10.0.1.{i}", None)
                said = "signed in"
            except SignInRefused as exc:
                said = "limit" if "too many" in str(exc) else "checked"
            with lock:
                answers.append(said)

        workers = [threading.Thread(target=guess, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        # One place left under the limit: one password checked, every other one refused.
        assert sorted(answers) == ["checked"] + ["limit"] * (threads - 1)
        assert _failures(accounts, "dana") == 5
        with pytest.raises(SignInRefused, match="too many"):
            accounts.sign_in("dana", PASSWORD, "10.0.0.9", None)


def test_expired_attempts_are_pruned_a_bounded_few_per_sign_in(db_url: str) -> None:
    with run_clinic(db_url) as clinic:
        accounts = Accounts(clinic.live.store, Policy(lockout=timedelta(minutes=15)))
        accounts.add_user("dana", "clinician", PASSWORD)
        old, recent = NOW - timedelta(hours=2), NOW - timedelta(minutes=5)
        with clinic.live.store.engine.begin() as conn:
            for i in range(2 * PRUNE_PER_SIGNIN + 10):
                conn.execute(
                    text(
                        "INSERT INTO signin_attempt (at, user_name, address, ok) "
                        "VALUES (:t, :n, '10.9.9.9', 0)"
                    ),
                    {"t": iso(old + timedelta(seconds=i)), "n": f"guess{i}"},
                )
            conn.execute(
                text(
                    "INSERT INTO signin_attempt (at, user_name, address, ok) "
                    "VALUES (:t, 'dana', '10.0.0.1', 0)"
                ),
                {"t": iso(recent)},
            )

        def held() -> tuple[int, int]:
            with clinic.live.store.engine.connect() as conn:
                rows = conn.execute(text("SELECT at FROM signin_attempt")).scalars().all()
            cut = iso(NOW - timedelta(minutes=15))
            return sum(1 for at in rows if at <= cut), sum(1 for at in rows if at > cut)

        assert held() == (2 * PRUNE_PER_SIGNIN + 10, 1)
        accounts.sign_in("dana", PASSWORD, "10.0.0.1", None)
        assert held() == (PRUNE_PER_SIGNIN + 10, 2)  # the recent failure and this sign-in
        with pytest.raises(SignInRefused):
            accounts.sign_in("dana", "wrong password!", "10.0.0.1", None)
        assert held() == (10, 3)
        accounts.sign_in("dana", PASSWORD, "10.0.0.1", None)
        assert held() == (0, 4)

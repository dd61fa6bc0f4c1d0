"""The store encrypted at rest: a copy of the data folder tells nothing without the
passphrase; wrong passphrases change nothing; keys can be changed and recovered; a plain
store is encrypted in place with its unsent records."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from popup_kit.config import KitConfig
from popup_kit.services import VisitService
from popup_kit.store import Store, StoreError
from popup_kit.store.keys import KeyFile, PassphraseNeeded, WrongPassphrase, key_path
from sync.sqlite import is_plain
from tests.kit.conftest import StepClock, with_contact

NAME = "Ana Ruiz"
PHONE = "+34 600 111 222"
# an answer key and the draft's own marker: both would show in a plain file's JSON
SECRETS = (NAME.encode(), PHONE.encode(), b"ces_saddle_numbness", b"DRAFT-MARKER-7731")


def every_file(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def seed(config: KitConfig) -> None:
    service = VisitService(config, clock=StepClock())
    service.record_visit(with_contact())
    service.save_draft("d1", "AB", "en", {"note": "DRAFT-MARKER-7731", "contact": [NAME, PHONE]})
    service.close()


def test_a_copy_of_the_data_folder_tells_no_name_phone_or_answer(
    config: KitConfig, tmp_path: Path
) -> None:
    seed(config)
    copy = tmp_path / "stolen"
    shutil.copytree(config.data_dir, copy)
    files = every_file(copy)
    assert any(p.name == config.db_path.name for p in files)
    for path, data in files.items():
        for secret in SECRETS:
            assert secret not in data, (path.name, secret)
    # sqlite3 without the key cannot read it either
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(copy / config.db_path.name).execute("SELECT * FROM visit").fetchall()
    # and with the passphrase it is all there
    store = Store(copy / config.db_path.name)
    assert [v.contact.name for v in store.visits() if v.contact] == [NAME]
    store.close()


def test_the_check_would_see_a_plain_store(config: KitConfig) -> None:
    """The byte search above finds the secrets when the store is plain."""
    seed(config)
    store = Store(config.db_path)
    plain = config.db_path.with_name("plain.sqlite3")
    from sync.sqlite import connect_raw

    raw = connect_raw(config.db_path, store.key)
    raw.execute(f"ATTACH DATABASE '{plain}' AS p KEY ''")
    raw.execute("SELECT sqlcipher_export('p')")
    raw.close()
    store.close()
    data = plain.read_bytes()
    assert NAME.encode() in data and PHONE.encode() in data and b"ces_saddle_numbness" in data


def test_wrong_or_missing_passphrase_is_refused_and_changes_nothing(
    config: KitConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(config)
    before = every_file(config.data_dir)
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        Store(config.db_path, passphrase="not the passphrase")
    monkeypatch.delenv("POPUP_KIT_PASSPHRASE")
    with pytest.raises(PassphraseNeeded):
        Store(config.db_path)
    assert every_file(config.data_dir) == before


def test_a_new_store_needs_a_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POPUP_KIT_PASSPHRASE")
    with pytest.raises(PassphraseNeeded, match="passphrase set"):
        Store(tmp_path / "kit.sqlite3")
    assert not key_path(tmp_path / "kit.sqlite3").exists()
    with pytest.raises(StoreError, match="at least 8"):
        Store(tmp_path / "kit.sqlite3", passphrase="short")


def test_change_passphrase_and_recover(tmp_path: Path) -> None:
    path = tmp_path / "kit.sqlite3"
    store = Store(path, passphrase="first passphrase")
    recovery = store.recovery_key
    assert recovery is not None and len(recovery.replace("-", "")) == 32
    store.close()
    assert Store(path, passphrase="first passphrase").recovery_key is None  # shown once

    keyfile = KeyFile.load(key_path(path))
    data_key = keyfile.unwrap("first passphrase")
    keyfile.rewrapped(data_key, "second passphrase").save(key_path(path))
    with pytest.raises(WrongPassphrase):
        Store(path, passphrase="first passphrase")
    Store(path, passphrase="second passphrase").close()

    # recovery: the key alone (any case, any spacing) opens it; a wrong one does not
    keyfile = KeyFile.load(key_path(path))
    with pytest.raises(WrongPassphrase, match="recovery"):
        keyfile.unwrap_recovery("AAAA-" * 7 + "AAAA")
    recovered = keyfile.unwrap_recovery(recovery.lower().replace("-", " "))
    assert recovered == data_key
    keyfile.rewrapped(recovered, "third passphrase").save(key_path(path))
    Store(path, passphrase="third passphrase").close()


def make_plain_store(config: KitConfig) -> int:
    """A store as an earlier popup-kit left it: plain, with unsent records."""
    plain = Store(config.db_path, encrypted=False)
    service = VisitService(config, clock=StepClock(), store=plain)
    service.record_visit(with_contact())
    service.record_visit(with_contact())
    service.close()
    with sqlite3.connect(config.db_path) as conn:
        found = conn.execute("SELECT COUNT(*) FROM outbox WHERE state='pending'").fetchone()
    return int(found[0])


def test_a_plain_store_is_encrypted_in_place_with_its_unsent_records(
    config: KitConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = make_plain_store(config)
    assert pending > 0 and is_plain(config.db_path)
    assert NAME.encode() in config.db_path.read_bytes()

    monkeypatch.delenv("POPUP_KIT_PASSPHRASE")
    with pytest.raises(PassphraseNeeded):
        Store(config.db_path)
    assert is_plain(config.db_path)  # refused: untouched

    store = Store(config.db_path, passphrase="upgrade passphrase")
    assert store.encrypted_plain and store.recovery_key
    with store.engine.connect() as conn:
        count = conn.execute(text("SELECT COUNT(*) FROM outbox WHERE state='pending'")).scalar()
    assert count == pending
    assert store.unsent().count == pending
    store.close()
    assert not is_plain(config.db_path)
    for path, data in every_file(config.data_dir).items():
        for secret in SECRETS[:3]:
            assert secret not in data, (path.name, secret)


def popup_kit(
    args: list[str], data_dir: Path, stdin: str = "", passphrase: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POPUP_KIT_PASSPHRASE"}
    env["POPUP_KIT_DATA_DIR"] = str(data_dir)
    env.pop("POPUP_KIT_CONFIG", None)
    if passphrase is not None:
        env["POPUP_KIT_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "popup_kit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_passphrase_commands_as_a_coordinator_runs_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    locked = popup_kit(["visits"], data)
    assert locked.returncode != 0 and "passphrase set" in locked.stderr
    assert len(locked.stderr.strip().splitlines()) == 1

    differ = popup_kit(["passphrase", "set"], data, "first passphrase\nfirst passphrasX\n")
    assert differ.returncode == 2 and "differ" in differ.stderr
    assert not key_path(data / "popup-kit.sqlite3").exists()

    made = popup_kit(["passphrase", "set"], data, "first passphrase\nfirst passphrase\n")
    assert made.returncode == 0, made.stderr
    recovery = made.stdout.split("recovery key: ")[1].split()[0]

    wrong = popup_kit(["visits"], data, passphrase="not it at all")
    assert wrong.returncode != 0 and wrong.stderr.count("\n") == 1
    assert "wrong passphrase" in wrong.stderr
    assert popup_kit(["visits"], data, passphrase="first passphrase").returncode == 0

    bad_change = popup_kit(["passphrase", "change"], data, "guess guess\nx\nx\n")
    assert bad_change.returncode == 1 and "wrong passphrase" in bad_change.stderr
    changed = popup_kit(
        ["passphrase", "change"], data, "first passphrase\nsecond passphrase\nsecond passphrase\n"
    )
    assert changed.returncode == 0, changed.stderr
    assert popup_kit(["visits"], data, passphrase="first passphrase").returncode != 0

    recovered = popup_kit(
        ["passphrase", "recover"], data, f"{recovery}\nthird passphrase\nthird passphrase\n"
    )
    assert recovered.returncode == 0, recovered.stderr
    assert popup_kit(["visits"], data, passphrase="third passphrase").returncode == 0


def test_the_data_folder_is_owner_only_and_every_file_0600(config: KitConfig) -> None:
    seed(config)
    assert config.kit_id
    assert config.data_dir.stat().st_mode & 0o777 == 0o700
    for path in config.data_dir.iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path.name

"""`popup-kit server user add|disable|list` and `popup-kit server audit`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from popup_kit.cli import main
from sync.server.accounts import Accounts, SignInRefused
from sync.server.store import ServerStore


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "server.toml"
    path.write_text('database_url = "server.sqlite3"\n')
    assert main(["server", "migrate", "--config", str(path)]) == 0
    return path


def test_user_add_list_disable_and_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    args = ["server", "user", "add", "dana", "--role", "clinician", "--password-stdin"]
    assert main([*args, "--config", str(config)]) == 0
    assert "user dana added (clinician)" in capsys.readouterr().out
    # The same name again, a short password, a bad name: refused with the reason.
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main([*args, "--config", str(config)]) == 2
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    short = ["server", "user", "add", "eli", "--role", "coordinator", "--password-stdin"]
    assert main([*short, "--config", str(config)]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    bad = ["server", "user", "add", "x;drop", "--role", "clinician", "--password-stdin"]
    assert main([*bad, "--config", str(config)]) == 2
    assert "not a valid user name" in capsys.readouterr().err
    capsys.readouterr()

    store = ServerStore(str(tmp_path / "server.sqlite3"))
    try:
        with store.engine.connect() as conn:
            stored = conn.execute(text("SELECT password_hash FROM staff_user")).scalar_one()
        assert stored.startswith("$argon2id$") and "long enough" not in stored
        accounts = Accounts(store)
        session = accounts.sign_in("dana", "a long enough password", "127.0.0.1", None)
        accounts.audit(session.user, "view_referral", "kit-a", "AAAA-BBBB", "")
    finally:
        store.close()

    assert main(["server", "user", "list", "--json", "--config", str(config)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("dana", "clinician", False)]
    assert main(["server", "audit", "--json", "--config", str(config)]) == 0
    audit = json.loads(capsys.readouterr().out)
    assert [(e["user"], e["action"], e["referral_code"]) for e in audit] == [
        ("dana", "view_referral", "AAAA-BBBB"),
        ("dana", "sign_in", None),
    ]
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["server", "audit", "--config", str(config)]) == 0
    assert "view_referral" in capsys.readouterr().out

    assert main(["server", "user", "disable", "dana", "--config", str(config)]) == 0
    assert main(["server", "user", "disable", "dana", "--config", str(config)]) == 1
    capsys.readouterr()
    store = ServerStore(str(tmp_path / "server.sqlite3"))
    try:
        with pytest.raises(SignInRefused):
            Accounts(store).sign_in("dana", "a long enough password", "127.0.0.1", None)
    finally:
        store.close()

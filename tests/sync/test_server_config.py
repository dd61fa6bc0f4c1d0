"""server.toml: found once, checked key by key, and the database named only there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from popup_kit.cli import main
from sync.server.settings import ConfigError, load_settings, settings_from

EXAMPLE = Path(__file__).parents[2] / "server.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text)
    return path


def test_example_file_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    from sync.server.settings import ServerSettings

    settings = load_settings(EXAMPLE, env={})
    assert settings.port == 8470 and settings.enrolment_token_hours == 24
    text = EXAMPLE.read_text()
    for key in ServerSettings.model_fields:
        assert f"\n{key} =" in text or f"\n# {key} =" in text, key


def test_found_by_env_and_relative_sqlite_path(tmp_path: Path) -> None:
    path = _write(tmp_path, 'database_url = "data/server.sqlite3"\n')
    settings = load_settings(None, env={"POPUP_KIT_SERVER_CONFIG": str(path)})
    assert settings.database_url == str(tmp_path / "data" / "server.sqlite3")


def test_env_overrides_database_url(tmp_path: Path) -> None:
    path = _write(tmp_path, 'database_url = "a.sqlite3"\n')
    settings = load_settings(
        path, env={"POPUP_KIT_SERVER_DATABASE_URL": "postgresql+psycopg://u@h/db"}
    )
    assert settings.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('database_url = "x"\ndatabse_url = "y"\n', "unknown key 'databse_url'"),
        ('database_url = "x"\nport = "eighty"\n', "key 'port'"),
        ('database_url = "x"\ntrusted_proxies = ["not-an-ip"]\n', "trusted_proxies"),
        ("port = 8000\n", "missing key 'database_url'"),
        ('database_url = "x"\nport = \n', "not valid TOML"),
    ],
)
def test_bad_files_refused_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        load_settings(_write(tmp_path, text), env={})


def test_no_config_is_a_clear_refusal(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("POPUP_KIT_SERVER_CONFIG", raising=False)
    assert main(["server", "records"]) == 2
    assert "POPUP_KIT_SERVER_CONFIG" in capsys.readouterr().err


def test_enroll_refuses_a_database_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, 'database_url = "missing/server.sqlite3"\n')
    assert main(["server", "enroll", "kit-a", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "server migrate" in err
    assert not (tmp_path / "missing").exists()
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("bad", ["<script>", "kit[/]x"])
def test_cli_enroll_refuses_bad_kit_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    path = _write(tmp_path, 'database_url = "server.sqlite3"\n')
    assert main(["server", "migrate", "--config", str(path)]) == 0
    capsys.readouterr()
    assert main(["server", "enroll", bad, "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "not a valid kit id" in captured.err and "token" not in captured.out.lower()


def test_migrate_creates_then_enroll_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, 'database_url = "server.sqlite3"\n')
    assert main(["server", "migrate", "--config", str(path)]) == 0
    from tests.sync.test_server_api import _head

    assert f"at schema {_head()}\n" in capsys.readouterr().out
    assert main(["server", "enroll", "kit-a", "--config", str(path)]) == 0
    assert "within 24 hours" in capsys.readouterr().out


def test_followup_windows_default_and_refusals() -> None:
    from sync.server.followups import current, next_window, windows

    config = settings_from({"database_url": "x.sqlite3"})
    ws = windows(config.followup_windows)
    assert [(w.name, w.first_day, w.last_day) for w in ws] == [
        ("w2", 11, 17),
        ("w6", 38, 46),
        ("w12", 77, 91),
    ]
    visit = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
    assert current(ws, visit, visit + timedelta(days=11)) == ws[0]
    assert current(ws, visit, visit + timedelta(days=11) - timedelta(seconds=1)) is None
    assert current(ws, visit, visit + timedelta(days=18) - timedelta(seconds=1)) == ws[0]
    assert current(ws, visit, visit + timedelta(days=18)) is None
    assert next_window(ws, visit, visit + timedelta(days=18)) == ws[1]
    assert next_window(ws, visit, visit + timedelta(days=92)) is None
    with pytest.raises(ConfigError, match="overlap"):
        settings_from({"database_url": "x", "followup_windows": {"a": [1, 10], "b": [10, 12]}})
    with pytest.raises(ConfigError, match="followup_windows"):
        settings_from({"database_url": "x", "followup_windows": {"a": [5, 2]}})

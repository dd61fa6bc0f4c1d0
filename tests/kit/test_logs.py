"""The kit's log: handled failures leave their traceback, and nothing personal."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from popup_kit import logs
from popup_kit.cli import main

NAME, PHONE, ANSWER = "Zebulon Quartermaine", "+447700900461", "sharp pain since the fall"


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    logs.teardown()
    data = tmp_path / "data"
    logs.setup(data)
    yield data
    logs.teardown()


def _fail_with_personal_data() -> None:
    try:
        raise LookupError(f"no visit for {NAME}")
    except LookupError as exc:
        raise ValueError(f"bad phone {PHONE} / {ANSWER}") from exc


def test_a_handled_failure_logs_its_traceback_without_personal_data(log_dir: Path) -> None:
    try:
        _fail_with_personal_data()
    except Exception:
        logs.failure("saving a visit failed")
    logging_done = logs.log_path(log_dir)
    text = logging_done.read_text("utf-8")
    assert "ERROR popup_kit: saving a visit failed" in text
    assert "_fail_with_personal_data" in text  # the frame that raised
    assert "builtins.ValueError (message withheld)" in text
    assert "builtins.LookupError (message withheld)" in text  # the cause too
    raw = logging_done.read_bytes()
    for secret in (NAME, PHONE, ANSWER):
        assert secret.encode() not in raw
    assert stat.S_IMODE(logging_done.stat().st_mode) == 0o600


def test_the_log_rotates(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert logs._handler is not None
    monkeypatch.setattr(logs._handler, "maxBytes", 2_000)
    for _ in range(60):
        try:
            _fail_with_personal_data()
        except Exception:
            logs.failure("saving a visit failed")
    names = sorted(p.name for p in log_dir.iterdir() if p.name.startswith(logs.LOG_FILE))
    assert names[:2] == [logs.LOG_FILE, logs.LOG_FILE + ".1"]
    assert len(names) == 1 + logs.BACKUPS
    for path in log_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_info_says_where_the_log_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.teardown()
    monkeypatch.setenv("POPUP_KIT_DATA_DIR", str(tmp_path / "kit"))
    monkeypatch.delenv("POPUP_KIT_CONFIG", raising=False)
    try:
        assert main(["info", "--json"]) == 0
    finally:
        logs.teardown()
    assert json.loads(capsys.readouterr().out)["log"] == str(tmp_path / "kit" / logs.LOG_FILE)

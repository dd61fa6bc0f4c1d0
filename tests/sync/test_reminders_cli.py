"""`popup-kit server reminders [--at] [--dry-run] [--json]`: its counts, its exit code, and
the gateway token from the environment."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from popup_kit.cli import main
from printouts.codes import new_referral_code
from sync.server.settings import load_settings
from tests.support.sms_gateway import sms_gateway
from tests.sync.clinic_support import NOW, referral_records, run_clinic, send
from tests.sync.live_server import enroll_kit

VISIT = NOW - timedelta(hours=1)
AT = (VISIT + timedelta(days=12)).isoformat()


def test_cli_counts_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "server.sqlite3"
    with sms_gateway() as gateway, run_clinic(f"sqlite:///{db}") as clinic:
        kit = enroll_kit(clinic.live)
        records = referral_records(kit.kit_id, new_referral_code(), visit_at=VISIT)
        records += referral_records(
            kit.kit_id, new_referral_code(), visit_at=VISIT, phone="+34 612 345 678"
        )
        records += referral_records(
            kit.kit_id, new_referral_code(), visit_at=VISIT, phone="612 345 678"
        )
        send(clinic, kit, records)
        config = tmp_path / "server.toml"
        config.write_text(
            f'database_url = "server.sqlite3"\nsms_webhook_url = "{gateway.url}"\n'
            "sms_timeout_seconds = 1\n"
        )
        monkeypatch.setenv("POPUP_KIT_SERVER_SMS_TOKEN", "from-the-environment")
        assert load_settings(config).sms_webhook_token == "from-the-environment"
        base = ["server", "reminders", "--config", str(config)]

        assert main([*base, "--at", AT, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert out.strip() == (
            "dry run: would send 2, sent 0, failed 0, to retry 0, skipped (no SMS number) 1"
        )
        assert gateway.received == []

        gateway.answer(200, 500)
        assert main([*base, "--at", AT, "--json"]) == 1
        captured = capsys.readouterr()
        assert json.loads(captured.out) == {"sent": 1, "failed": 0, "retry": 1, "skipped": 1}
        assert "the SMS gateway failed 1 time(s)" in captured.err
        assert gateway.received[0].headers["Authorization"] == "Bearer from-the-environment"

        gateway.answer(200)
        later = (VISIT + timedelta(days=12, hours=1)).isoformat()
        assert main([*base, "--at", later]) == 0
        assert capsys.readouterr().out.strip() == (
            "sent 1, failed 0, to retry 0, skipped (no SMS number) 0"
        )
        assert main([*base, "--at", later, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["sent"] == 0
        assert len(gateway.received) == 3

        assert main([*base, "--at", "not a time"]) == 2
        assert "--at 'not a time' is not an ISO 8601 time" in capsys.readouterr().err
    off = tmp_path / "off.toml"
    off.write_text('database_url = "server.sqlite3"\n')
    assert main(["server", "reminders", "--config", str(off)]) == 2
    assert "reminders are off" in capsys.readouterr().err

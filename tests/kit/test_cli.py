"""`popup-kit screen`, `visit add` and `visits` as a script or a coordinator uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from popup_kit.cli import main
from popup_kit.config import KitConfig
from tests.forms.answers import BENIGN, startback
from tests.kit.conftest import CONSENT_ALL, CONSENT_MIN

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: Any, name: str = "answers.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), "utf-8")
    return str(path)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"triage": "self_care", "rules": []}),
        ({"ces_bowel_change": "new_or_worsening"}, {"triage": "emergency", "rules": ["EM1"]}),
        (
            {"night_pain_non_mechanical": True, "age_years": 51},
            {"triage": "urgent", "rules": ["UR10", "RO1"]},
        ),
        ({"startback": startback(4, 4)}, {"triage": "routine", "rules": ["RO2"]}),
    ],
)
def test_screen_json(
    tmp_path: Path,
    config: KitConfig,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    code, out, _ = run(
        ["screen", "--answers", write(tmp_path, {**BENIGN, **changes}), "--json"], capsys
    )
    assert code == 0
    result = json.loads(out)
    assert {k: result[k] for k in expected} == expected
    assert result["ruleset_version"] == "2026.11-1"
    assert set(result) == {"triage", "rules", "ruleset_version", "startback"}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({**BENIGN, "colour": "red"}, "colour"),
        ({k: v for k, v in BENIGN.items() if k != "leg_pain_side"}, "leg_pain_side: is missing"),
        ({**BENIGN, "pain_nrs": 11}, "pain_nrs: must be a whole number from 0 to 10"),
        ([1, 2], "JSON object"),
    ],
)
def test_screen_bad_input_exit_2_naming_the_field(
    tmp_path: Path,
    config: KitConfig,
    capsys: pytest.CaptureFixture[str],
    data: Any,
    words: str,
) -> None:
    code, out, err = run(["screen", "--answers", write(tmp_path, data)], capsys)
    assert code == 2 and out == ""
    assert words in err and err.count("\n") == 1


def test_screen_not_json_and_missing_file(
    tmp_path: Path, config: KitConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{'age_years': 40}")
    code, _, err = run(["screen", "--answers", str(bad)], capsys)
    assert code == 2 and "not valid JSON (line 1, column 2" in err
    code, _, err = run(["screen", "--answers", str(tmp_path / "none.json")], capsys)
    assert code == 2 and "no such file" in err


def test_screen_follows_kit_toml_thresholds(
    tmp_path: Path, config: KitConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = tmp_path / "kit.toml"
    kit.write_text("[thresholds]\nfracture_age = 65\n")
    answers = write(tmp_path, {**BENIGN, "recent_trauma": "minor", "age_years": 66})
    code, out, _ = run(["screen", "--config", str(kit), "--answers", answers, "--json"], capsys)
    assert code == 0
    assert json.loads(out) == {
        "triage": "urgent",
        "rules": ["UR9"],
        "ruleset_version": "2026.11-1+fracture_age=65",
        "startback": {"total": 0, "psychosocial": 0, "risk": "low"},
    }


def visit_file(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        **BENIGN,
        "language": "es",
        "volunteer": "AB",
        "consent": dict(CONSENT_MIN),
    }
    data.update(changes)
    return data


def test_visit_add_then_visits(
    tmp_path: Path, config: KitConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    data = visit_file(
        consent=dict(CONSENT_ALL),
        contact={"name": "Ana", "phone": "600111222"},
        fever_or_rigors=True,
    )
    code, out, _ = run(["visit", "add", "--answers", write(tmp_path, data), "--json"], capsys)
    assert code == 0
    added = json.loads(out)
    assert set(added) == {"id", "code", "triage"} and added["triage"] == "urgent"
    code, out, _ = run(["visits", "--json"], capsys)
    listed = json.loads(out)
    assert [v["code"] for v in listed] == [added["code"]]
    assert listed[0]["language"] == "es" and listed[0]["rules"] == ["UR7"]
    assert listed[0]["contact"] == {"name": "Ana", "phone": "600111222"}
    assert listed[0]["sync"] == "pending"
    code, out, _ = run(["visits", "--date", "1999-01-01", "--json"], capsys)
    assert json.loads(out) == []
    code, out, _ = run(["visits"], capsys)
    assert added["code"] in out and "urgent" in out


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"contact": {"name": "Ana", "phone": "600111222"}}, "consent C3"),
        ({"consent": {**CONSENT_MIN, "c1": False}}, "consent C1"),
        ({"consent": None}, "consent"),
        ({"volunteer": ""}, "volunteer"),
        ({"age_years": 200}, "age_years"),
    ],
)
def test_visit_add_refusals_store_nothing(
    tmp_path: Path,
    config: KitConfig,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, Any],
    words: str,
) -> None:
    code, _, err = run(
        ["visit", "add", "--answers", write(tmp_path, visit_file(**changes))], capsys
    )
    assert code == 2 and words in err
    run(["visits", "--json"], capsys)
    code, out, _ = run(["visits", "--json"], capsys)
    assert json.loads(out) == []


def test_exit_code_from_a_real_process(tmp_path: Path, config: KitConfig) -> None:
    answers = write(tmp_path, {**BENIGN, "weight_loss": "lots"})
    done = subprocess.run(
        [sys.executable, "-m", "popup_kit", "screen", "--answers", answers],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("popup-kit: answers: weight_loss: must be one of")


def test_info_names_the_kit(config: KitConfig, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["kit_id"] == config.kit_id and facts["enrolled_with"] is None
    assert facts["ruleset_version"] == "2026.11-1" and facts["config"] == "embedded default"

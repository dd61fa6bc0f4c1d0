"""`popup-kit visit correct` and `visit void`: the headless corrections say when the level
changed, make the new slip, and refuse what they must."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from popup_kit.config import KitConfig
from popup_kit.services import VisitService
from tests.kit.test_cli import run, visit_file, write


def added(tmp_path: Path, capsys: pytest.CaptureFixture[str], **changes: object) -> str:
    data = visit_file(language="en", **changes)
    code, out, _ = run(["visit", "add", "--answers", write(tmp_path, data), "--json"], capsys)
    assert code == 0
    return str(json.loads(out)["code"])


def test_correction_into_an_emergency_says_so_and_makes_the_new_slip(
    tmp_path: Path, config: KitConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    code = added(tmp_path, capsys)
    changes = write(tmp_path, {"ces_saddle_numbness": "new_or_worsening"}, "fix.json")
    status, out, _ = run(["visit", "correct", code, "--answers", changes], capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"visit {code} corrected: version 2, outcome emergency"
    assert lines[1] == "OUTCOME CHANGED: self_care -> emergency."
    assert lines[2].startswith("EMERGENCY: contact the person now. Go to the Emergency")
    assert "call 999" in lines[2]
    assert "(version 1) is replaced" in lines[3]
    assert lines[4].startswith("New slip not printed: no printer set")
    pdfs = list(config.slips_dir.glob(f"{code}*.pdf"))
    assert len(pdfs) == 1 and pdfs[0].read_bytes().startswith(b"%PDF")
    service = VisitService(config)
    try:
        visit = service.find_by_code(code)
    finally:
        service.close()
    assert visit is not None and visit.triage == "emergency" and visit.version == 2
    assert visit.answers["ces_saddle_numbness"] == "new_or_worsening"
    assert visit.answers["age_years"] == 40  # the answers not in the file stay


def test_correction_keeping_the_level_says_the_slip_holds(
    tmp_path: Path, config: KitConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    code = added(tmp_path, capsys)
    changes = write(tmp_path, {"pain_nrs": 4}, "fix.json")
    status, out, _ = run(["visit", "correct", code, "--answers", changes, "--json"], capsys)
    assert status == 0
    assert json.loads(out) == {
        "code": code,
        "version": 2,
        "triage": "self_care",
        "previous_triage": "self_care",
        "level_changed": False,
    }
    assert list(config.slips_dir.glob("*.pdf")) == []


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"age_years": 200}, "age_years"),
        ({"ces_saddle_numbness": "maybe"}, "ces_saddle_numbness"),
        ({"language": "en"}, "cannot be changed"),
        ({}, "answers to change"),
    ],
)
def test_correction_refusals_keep_the_visit(
    tmp_path: Path,
    config: KitConfig,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, object],
    words: str,
) -> None:
    code = added(tmp_path, capsys)
    status, _, err = run(
        ["visit", "correct", code, "--answers", write(tmp_path, changes, "fix.json")], capsys
    )
    assert status == 2 and words in err
    _, out, _ = run(["visits", "--json"], capsys)
    assert [v["version"] for v in json.loads(out)] == [1]


def test_correct_or_void_an_unknown_code_is_refused(
    tmp_path: Path, config: KitConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    code = added(tmp_path, capsys)
    mistyped = ("2" if code[0] == "3" else "3") + code[1:]  # one character wrong
    status, _, err = run(["visit", "void", mistyped, "--reason", "typo"], capsys)
    assert status == 2 and "not a referral code" in err


def test_void_says_the_slip_is_no_longer_valid_and_refuses_twice(
    tmp_path: Path, config: KitConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    code = added(tmp_path, capsys)
    status, out, _ = run(["visit", "void", code, "--reason", "duplicate"], capsys)
    assert status == 0
    assert out.strip() == (
        f"visit {code} voided (version 2; it was self_care). The outcome no longer stands: "
        "the person's slip is not valid; take it back."
    )
    status, _, err = run(["visit", "void", code, "--reason", "again"], capsys)
    assert status == 2 and "already void" in err
    status, _, err = run(["visit", "void", code, "--reason", " "], capsys)
    assert status == 2
    changes = write(tmp_path, {"pain_nrs": 4}, "fix.json")
    status, _, err = run(["visit", "correct", code, "--answers", changes], capsys)
    assert status == 2 and "void" in err

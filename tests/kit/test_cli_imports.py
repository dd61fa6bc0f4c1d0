"""Commands that do not need the store start fast because they import only what they use:
checked on the modules a real process has loaded, not on a clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.forms.answers import BENIGN

ROOT = Path(__file__).resolve().parents[2]
# Each of these costs from a tenth of a second to over a second to import.
HEAVY = ("sqlalchemy", "sqlmodel", "textual", "reportlab", "pydantic", "requests", "qrcode")

PROBE = """
import json, sys
from popup_kit.cli import main
try:
    main(sys.argv[1:])
except SystemExit:  # --help exits once printed
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print("\\nHEAVY=" + json.dumps(heavy))
"""


def run_probe(args: list[str], data_dir: Path) -> tuple[list[str], str]:
    """The heavy libraries a real `popup-kit ARGS` process loaded, and its output."""
    env = dict(os.environ, POPUP_KIT_DATA_DIR=str(data_dir))
    env.pop("POPUP_KIT_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    marker = done.stdout.rsplit("HEAVY=", 1)
    assert len(marker) == 2, done.stderr
    return list(json.loads(marker[1])), marker[0]


@pytest.mark.parametrize(
    "args",
    [
        ["info", "--json"],
        ["info"],
        ["screen", "--json", "--answers", "{answers}"],
    ],
    ids=["info-json", "info", "screen"],
)
def test_light_commands_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(BENIGN), "utf-8")
    argv = [a.format(answers=answers) for a in args]
    heavy, out = run_probe(argv, tmp_path / "data")
    assert out.strip()
    assert heavy == []


def test_help_imports_no_heavy_library(tmp_path: Path) -> None:
    heavy, out = run_probe(["--help"], tmp_path / "data")
    assert "usage: popup-kit" in out
    assert heavy == []


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    # The probe must be able to fail: `visits` opens the store, so SQLAlchemy is loaded.
    heavy, _ = run_probe(["visits", "--json"], tmp_path / "data")
    assert "sqlalchemy" in heavy

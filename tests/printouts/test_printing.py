from __future__ import annotations

import os
from pathlib import Path

import pytest

from printouts.printing import print_pdf, slip_filename

PDF = b"%PDF-1.3\n% test\n"


def _fake_lp(bin_dir: Path, log: Path, exit_code: int = 0) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "lp"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{log}"\n'
        f'if [ {exit_code} -ne 0 ]; then echo "lp: The printer or class does not exist." >&2; '
        f"exit {exit_code}; fi\n"
        'echo "request id is Thermal-7 (1 file(s))"\n'
    )
    script.chmod(0o755)


def test_prints_with_lp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "lp-args"
    _fake_lp(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = print_pdf(PDF, "Thermal", tmp_path / "slips", "ABC-receipt80.pdf")
    assert result.printed and "Thermal-7" in result.message
    assert result.path.read_bytes() == PDF
    assert log.read_text().split() == ["-d", "Thermal", "-t", "ABC-receipt80.pdf", str(result.path)]


def test_lp_failure_keeps_the_pdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_lp(tmp_path / "bin", tmp_path / "log", exit_code=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = print_pdf(PDF, "Thermal", tmp_path / "slips", "X.pdf")
    assert not result.printed
    assert "printer or class does not exist" in result.message
    assert str(result.path) in result.message and "\n" not in result.message
    assert result.path.read_bytes() == PDF


def test_no_printer_or_no_lp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = print_pdf(PDF, "", tmp_path, "A.pdf")
    assert not result.printed and "no printer set" in result.message
    assert result.path.exists()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = print_pdf(PDF, "Thermal", tmp_path, "B.pdf", lp_command="lp")
    assert not result.printed and "not installed" in result.message and result.path.exists()


def test_lp_that_hangs_times_out_and_keeps_the_pdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CUPS not answering: lp blocks until the timeout.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "lp"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = print_pdf(PDF, "Thermal", tmp_path / "slips", "Y.pdf", timeout=0.5)
    assert not result.printed and "timed out" in result.message
    assert str(result.path) in result.message and "\n" not in result.message
    assert result.path.read_bytes() == PDF


def test_file_names() -> None:
    assert slip_filename("K7M3Q-X9P2C-AW4T7", "receipt58") == "K7M3Q-X9P2C-AW4T7-receipt58.pdf"
    assert slip_filename("K7M3Q-X9P2C-AW4T7", "a6", "consent") == "K7M3Q-X9P2C-AW4T7-consent-a6.pdf"


def test_unwritable_slips_folder_falls_back_to_the_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    not_a_folder = tmp_path / "slips"
    not_a_folder.write_text("a file where the folder should be")
    result = print_pdf(PDF, "", not_a_folder, "Z.pdf")
    assert not result.printed and result.path == tmp_path / "tmp" / "Z.pdf"
    assert result.path.read_bytes() == PDF
    assert f"could not save in {not_a_folder}" in result.message
    assert str(result.path) in result.message and "\n" not in result.message

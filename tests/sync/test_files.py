"""Every file the kit writes is whole or absent, and readable by the kit's user only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from printouts.printing import save_pdf
from sync.credentials import KitCredentials
from sync.files import SharedFolder, atomic_write, private_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _permissive_umask() -> object:
    # A shared machine's umask must not decide who can read the kit's files.
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_write_replaces_whole_with_mode_0600_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "folder" / "kit-file"
    atomic_write(target, b"first")
    target.chmod(0o644)
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert _mode(target) == 0o600
    assert _mode(target.parent) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["kit-file"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "kit-file"
    atomic_write(target, b"old")

    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit-file"]


def test_private_dir_tightens_a_folder_someone_else_made_open(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    private_dir(folder)
    assert _mode(folder) == 0o700


def test_saved_slip_pdfs_and_credentials_are_private(tmp_path: Path) -> None:
    pdf = save_pdf(b"%PDF-1.4 slip", tmp_path / "slips", "CODE-receipt80.pdf")
    assert pdf.read_bytes() == b"%PDF-1.4 slip" and _mode(pdf) == 0o600
    creds = KitCredentials(
        server_url="https://triage.example.org",
        kit_id="kit-abc",
        credential="secret",
        receipt_key=b"k" * 32,
    )
    data = tmp_path / "data"
    path = creds.save(data)
    assert _mode(path) == 0o600 and _mode(data) == 0o700
    assert KitCredentials.load(data) == creds


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o1755])
def test_a_shared_folder_like_tmp_is_refused_and_left_as_it_was(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    with pytest.raises(SharedFolder, match="others can write in"):
        private_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == mode


def test_a_server_database_straight_in_a_shared_folder_is_refused(tmp_path: Path) -> None:
    from sync.server import ServerStore

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(SharedFolder):
        ServerStore(f"sqlite:///{shared / 'server.sqlite3'}")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert list(shared.iterdir()) == []

"""The kit's server credentials and slip key are sealed under the store's key: a copy of
the data folder gives neither without the passphrase, and old plain files are sealed."""

from __future__ import annotations

import base64
import dataclasses
import json
import multiprocessing
import os
import stat
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from popup_kit.config import KitConfig
from popup_kit.enrolment import SEALED_CREDENTIALS, enrolled_with
from popup_kit.services import VisitService
from popup_kit.vault import (
    PLAIN_CREDENTIALS,
    PLAIN_SLIP_KEY,
    SEALED_SLIP_KEY,
    SecretError,
    credentials,
    kit_key,
    save_credentials,
)
from sync.credentials import KitCredentials

CREDS = KitCredentials("http://127.0.0.1:8470", "kit-test", "credential-Zq81xv" * 3, b"\x07" * 32)


def _folder_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def _open(config: KitConfig) -> None:
    VisitService(config).store.close()


def test_neither_secret_is_in_any_byte_of_the_data_folder(config: KitConfig) -> None:
    _open(config)
    save_credentials(config, CREDS)
    key = kit_key(config)
    raw = _folder_bytes(config.data_dir)
    for secret in (
        CREDS.credential.encode(),
        CREDS.receipt_key,
        base64.b64encode(CREDS.receipt_key),
        key.secret,
        key.secret.hex().encode(),
        base64.b64encode(key.secret),
    ):
        assert secret not in raw
    assert credentials(config) == CREDS
    assert kit_key(config) == key
    for name in (SEALED_CREDENTIALS, SEALED_SLIP_KEY):
        assert stat.S_IMODE((config.data_dir / name).stat().st_mode) == 0o600


def test_info_says_where_the_kit_is_enrolled_without_the_passphrase(config: KitConfig) -> None:
    _open(config)
    save_credentials(config, CREDS)
    env = {k: v for k, v in os.environ.items() if k != "POPUP_KIT_PASSPHRASE"}
    env["POPUP_KIT_DATA_DIR"] = str(config.data_dir)  # the embedded default kit.toml
    out = subprocess.run(
        [sys.executable, "-m", "popup_kit", "info", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["enrolled_with"] == CREDS.server_url
    assert enrolled_with(config) == CREDS.server_url


def test_a_sealed_file_from_another_kit_does_not_open(config: KitConfig, tmp_path: Path) -> None:
    _open(config)
    save_credentials(config, CREDS)
    kit_key(config)
    other = dataclasses.replace(config, data_dir=tmp_path / "other-kit")
    _open(other)
    for name in (SEALED_CREDENTIALS, SEALED_SLIP_KEY):
        (other.data_dir / name).write_bytes((config.data_dir / name).read_bytes())
    with pytest.raises(SecretError, match="belongs to another kit"):
        credentials(other)
    with pytest.raises(SecretError, match="belongs to another kit"):
        kit_key(other)


def test_a_changed_public_part_does_not_open(config: KitConfig) -> None:
    _open(config)
    path = save_credentials(config, CREDS)
    doc = json.loads(path.read_text())
    doc["server_url"] = "https://evil.example"
    path.write_text(json.dumps(doc))
    with pytest.raises(SecretError):
        credentials(config)


def test_plain_files_of_an_earlier_release_are_sealed_and_removed(config: KitConfig) -> None:
    _open(config)
    plain_creds = config.data_dir / PLAIN_CREDENTIALS
    CREDS.save(config.data_dir)  # as releases before sealing wrote it
    assert plain_creds.exists()
    secret = "cd" * 32
    plain_key = config.data_dir / PLAIN_SLIP_KEY
    plain_key.write_text(json.dumps({"version": 1, "kit_id": "kit-test", "secret": secret}))
    assert credentials(config) == CREDS
    assert kit_key(config).secret.hex() == secret  # the slips already printed still verify
    assert not plain_creds.exists() and not plain_key.exists()
    raw = _folder_bytes(config.data_dir)
    assert CREDS.credential.encode() not in raw and secret.encode() not in raw
    assert credentials(config) == CREDS and kit_key(config).secret.hex() == secret


def _race_for_key(config: KitConfig) -> str:
    return kit_key(config).secret.hex()


def test_first_run_racing_processes_agree_on_one_key(config: KitConfig) -> None:
    _open(config)
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("fork")) as pool:
        found = set(pool.map(_race_for_key, [config] * 32))
    assert len(found) == 1
    leftovers = [p.name for p in config.data_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_damaged_sealed_file_says_so(config: KitConfig) -> None:
    _open(config)
    (config.data_dir / SEALED_SLIP_KEY).write_text("{not json")
    with pytest.raises(SecretError, match="damaged"):
        kit_key(config)

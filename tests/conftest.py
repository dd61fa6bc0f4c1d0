"""Every test's kit store is encrypted: the passphrase comes from the environment, as it
does for scripts, and new stores use a cheap key derivation (recorded in their key file)."""

import os

import pytest

os.environ.setdefault("POPUP_KIT_PASSPHRASE", "booth passphrase for tests")
os.environ.setdefault("POPUP_KIT_TEST_CHEAP_KDF", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The booth's UI tests (seconds each, and collected last) run first: handed out at the
    end, one of them can keep a worker busy while the others have nothing left to do."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/ui/"))

"""`popup-kit passphrase`: set the booth passphrase on first run, change it, or set a new
one with the recovery key. Passphrases are read without echo from the terminal, or one per
line from standard input when it is not a terminal (scripts)."""

from __future__ import annotations

import argparse
import getpass
import sys

from popup_kit.cli import CommandError, add_command, config_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "passphrase",
        "Set the booth passphrase that encrypts the visit store (first run), change it, or "
        "replace a forgotten one with the recovery key.",
        None,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text, handler in (
        (
            "set",
            "First run: choose the passphrase; a plain store from an earlier release is "
            "encrypted in place. Prints the recovery key once.",
            _set,
        ),
        ("change", "Change the passphrase (asks the current one first).", _change),
        ("recover", "Choose a new passphrase with the recovery key.", _recover),
    ):
        add_command(actions, name, help_text, handler)


def _ask(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise CommandError("no passphrase given (standard input ended)", 2)
    return line.rstrip("\n")


def _ask_new() -> str:
    from popup_kit.store.db import StoreError
    from popup_kit.store.keys import check_new_passphrase

    new = _ask("New booth passphrase: ")
    try:
        check_new_passphrase(new)
    except StoreError as exc:
        raise CommandError(str(exc), 2) from None
    if _ask("The same passphrase again: ") != new:
        raise CommandError("the two passphrases differ; nothing changed", 2)
    return new


def _set(args: argparse.Namespace) -> int:
    from popup_kit.store import Store
    from popup_kit.store.db import StoreError
    from popup_kit.store.keys import ENV_PASSPHRASE, store_state

    config = config_from(args)
    if store_state(config.db_path) == "encrypted":
        raise CommandError(
            "this kit already has a passphrase: `popup-kit passphrase change` to change it"
        )
    import os

    new = os.environ.get(ENV_PASSPHRASE) or _ask_new()
    try:
        store = Store(config.db_path, passphrase=new)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    store.close()
    if store.encrypted_plain:
        print("the existing visit store is now encrypted; its unsent records are kept")
    print(f"recovery key: {store.recovery_key}")
    print(
        "Write the recovery key down and keep it apart from this laptop: it is shown only "
        "now, and with it anyone can set a new passphrase."
    )
    return 0


def _change(args: argparse.Namespace) -> int:
    from popup_kit.store.db import StoreError
    from popup_kit.store.keys import change_passphrase, verify

    config = config_from(args)
    current = _ask("Current booth passphrase: ")
    try:
        verify(config.db_path, current)
        change_passphrase(config.db_path, current, _ask_new())
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    print("passphrase changed")
    return 0


def _recover(args: argparse.Namespace) -> int:
    from popup_kit.store.db import StoreError
    from popup_kit.store.keys import KeyFile, key_path, recover

    config = config_from(args)
    recovery = _ask("Recovery key: ")
    try:
        KeyFile.load(key_path(config.db_path)).unwrap_recovery(recovery)
        recover(config.db_path, recovery, _ask_new())
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    print("new passphrase set; the recovery key stays the same")
    return 0

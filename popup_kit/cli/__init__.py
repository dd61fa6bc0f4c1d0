"""The `popup-kit` command line.

With no subcommand it opens the terminal UI. Each command group is a module in this
package exposing ``register(subparsers)``; a module's heavy imports live inside its
handlers so that `popup-kit --help` and the UI start fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from popup_kit.config import ConfigError, KitConfig, load_config

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A failure a person can act on: printed as one line on stderr, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def config_from(args: argparse.Namespace) -> KitConfig:
    from popup_kit import logs

    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as exc:
        raise CommandError(f"configuration: {exc}", 2) from exc
    logs.setup(config.data_dir)
    return config


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="kit.toml to use (default: $POPUP_KIT_CONFIG, else the embedded default)",
    )
    return common


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Handler | None,
) -> argparse.ArgumentParser:
    """Add a subcommand that accepts --config like the top level does."""
    parser = sub.add_parser(name, help=help_text, description=help_text, parents=[_common()])
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="popup-kit",
        description=(
            "Field kit for pop-up back pain booths. With no command, opens the booth's terminal UI."
        ),
        epilog=(
            "Environment: POPUP_KIT_CONFIG (path of kit.toml), "
            "POPUP_KIT_DATA_DIR (where the kit keeps its database), "
            "POPUP_KIT_PASSPHRASE (the booth passphrase, for scripts)."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="kit.toml to use (default: $POPUP_KIT_CONFIG, else the embedded default)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    try:
        if handler is None:
            from popup_kit.cli._tui import run_tui

            return run_tui(args)
        return handler(args)
    except CommandError as exc:
        print(f"popup-kit: {exc}", file=sys.stderr)
        return exc.code
    except RuntimeError as exc:
        store_db = sys.modules.get("popup_kit.store.db")
        if store_db is None or not isinstance(exc, store_db.StoreError):
            raise
        # a locked store or a wrong passphrase: one line, nothing changed
        print(f"popup-kit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("popup-kit: interrupted", file=sys.stderr)
        return 130

"""Referral codes and slip signatures as the server checks them.

The rules themselves belong to ``printouts``: the code alphabet and check character to
``printouts.codes``, the slip signature to ``printouts.payload``. The server reaches them
through :class:`CodeRules` so that the landing page can be exercised on its own.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class CodeRules(Protocol):
    def normalize(self, raw: str) -> str | None:
        """The canonical code, or None when ``raw`` is not a valid referral code."""

    def verify(self, code: str, sig: str, secret: bytes) -> bool:
        """True when ``sig`` was made for ``code`` with the kit's slip key ``secret``."""


class PrintoutsCodes:
    """The kit's own rules, from ``printouts.codes`` and ``printouts.payload``."""

    def normalize(self, raw: str) -> str | None:
        codes, _payload = _printouts()
        try:
            return str(codes.normalize_code(raw))
        except ValueError:  # CodeError is a ValueError
            return None

    def verify(self, code: str, sig: str, secret: bytes) -> bool:
        _codes, payload = _printouts()
        try:
            return bool(payload.verify_signature(code, sig, secret))
        except (ValueError, TypeError):
            return False


class NoCodes:
    """Used when ``printouts`` cannot be imported: every code is unknown."""

    def normalize(self, raw: str) -> str | None:
        return None

    def verify(self, code: str, sig: str, secret: bytes) -> bool:
        return False


def _printouts() -> tuple[Any, Any]:
    # Looked up by name: the server runs (with referral pages off) without printouts.
    return (
        importlib.import_module("printouts.codes"),
        importlib.import_module("printouts.payload"),
    )


def default_rules() -> CodeRules:
    try:
        _printouts()
    except ImportError as exc:
        log.error("referral pages disabled: printouts is unavailable (%s)", exc)
        return NoCodes()
    return PrintoutsCodes()


def check_code(rules: CodeRules, raw: str) -> str | None:
    if not 1 <= len(raw) <= 40 or not raw.isascii() or not raw.isprintable():
        return None
    return rules.normalize(raw)


def signature_valid(rules: CodeRules, code: str, sig: str, secret: bytes) -> bool:
    if not sig or len(sig) > 64 or not sig.isascii() or not sig.isprintable():
        return False
    return rules.verify(code, sig, secret)

"""Referral codes: made offline, unguessable, easy to read out, with a check character.

Layout: 14 random symbols + 1 check symbol, printed as three groups of five
(``K7M3Q-X9P2C-AW4T7``). The alphabet has 31 symbols (Crockford's base32 without
``Z``, so no I, L, O, U or Z): 31 is prime, which is what lets a weighted sum catch
every mistake we promise to catch. 14 symbols of 31 give 14 * log2(31) = 69.4 bits
of randomness from :mod:`secrets`, so codes from independent kits do not collide and
cannot be enumerated.

Check character: position ``i`` (1-based, the check itself is position 15) has weight
``i``, and the check is chosen so that ``sum(i * value_i) % 31 == 0``. A single
substitution changes the sum by ``i * d`` with ``0 < i < 31`` and ``0 < |d| < 31``;
swapping neighbours changes it by ``+-(a - b)``. Neither is a multiple of the prime
31, so every such mistake is detected.

Pure Python on purpose: imported by the store and the UI at start-up.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXY"
MODULUS = len(ALPHABET)  # 31, prime
RANDOM_SYMBOLS = 14
CODE_LENGTH = RANDOM_SYMBOLS + 1
GROUP = 5
RANDOM_BITS = 69  # floor(14 * log2(31))

_SPACE = MODULUS**RANDOM_SYMBOLS
_CHECK_INVERSE = pow(CODE_LENGTH, -1, MODULUS)  # 15 is invertible mod the prime 31
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
# What people type or misread for a symbol we do not use.
_LOOK_ALIKES = {"O": "0", "I": "1", "L": "1", "U": "V", "Z": "2"}
_CANONICAL = re.compile(rf"[{ALPHABET}]{{5}}-?[{ALPHABET}]{{5}}-?[{ALPHABET}]{{5}}")
_MISTYPED = "check character does not match — a character was mistyped"
_SEPARATORS = frozenset(" -_.\t\u2010\u2011\u2012\u2013\u2014\u2212")


class CodeError(ValueError):
    """Text that is not a valid referral code; the message says what is wrong."""


def _weighted_sum(symbols: str) -> int:
    return sum((i + 1) * _VALUE[ch] for i, ch in enumerate(symbols)) % MODULUS


def check_character(body: str) -> str:
    """The check symbol for ``body`` (the 14 random symbols, canonical, no dashes)."""
    if len(body) != RANDOM_SYMBOLS or any(ch not in _VALUE for ch in body):
        raise CodeError(f"a code body is {RANDOM_SYMBOLS} symbols of {ALPHABET}")
    partial = _weighted_sum(body)
    # c with partial + 15 * c == 0 (mod 31)
    return ALPHABET[(-partial * _CHECK_INVERSE) % MODULUS]


def format_code(compact: str) -> str:
    """``K7M3QX9P2CAW4T7`` -> ``K7M3Q-X9P2C-AW4T7`` (no validation)."""
    return "-".join(compact[i : i + GROUP] for i in range(0, len(compact), GROUP))


def compact_code(code: str) -> str:
    """The canonical code without dashes, as used in URLs and signatures."""
    return normalize_code(code).replace("-", "")


def new_referral_code() -> str:
    """A fresh code in its canonical dashed form, e.g. ``K7M3Q-X9P2C-AW4T7``."""
    number = secrets.randbelow(_SPACE)
    digits = []
    total = 0
    for weight in range(1, RANDOM_SYMBOLS + 1):
        number, value = divmod(number, MODULUS)
        digits.append(ALPHABET[value])
        total += weight * value
    check = ALPHABET[(-total * _CHECK_INVERSE) % MODULUS]
    body = "".join(digits)
    return f"{body[:5]}-{body[5:10]}-{body[10:]}{check}"


def normalize_code(text: str) -> str:
    """Canonical dashed form of a code typed by a person or a barcode scanner.

    Accepts lower case, missing or extra dashes and spaces, and the look-alikes
    O->0, I/L->1, U->V, Z->2. Raises :class:`CodeError` saying what is wrong.
    """
    if _CANONICAL.fullmatch(text):
        compact = text.replace("-", "")
        if _weighted_sum(compact) != 0:
            raise CodeError(_MISTYPED)
        return format_code(compact)
    symbols: list[str] = []
    for raw in text.strip():
        if raw in _SEPARATORS:
            continue
        ch = raw.upper()
        ch = _LOOK_ALIKES.get(ch, ch)
        if ch not in _VALUE:
            raise CodeError(f"not a referral code character {raw!r}")
        symbols.append(ch)
    if not symbols:
        raise CodeError("no code given")
    if len(symbols) != CODE_LENGTH:
        raise CodeError(
            f"wrong length: a referral code has {CODE_LENGTH} characters "
            f"(three groups of {GROUP}), got {len(symbols)}"
        )
    compact = "".join(symbols)
    if _weighted_sum(compact) != 0:
        raise CodeError(_MISTYPED)
    return format_code(compact)


def is_valid_code(text: str) -> bool:
    try:
        normalize_code(text)
    except CodeError:
        return False
    return True


def extract_code(text: str) -> str:
    """A code typed by hand, or the whole slip URL typed by a USB barcode scanner.

    Returns the canonical dashed code; raises :class:`CodeError` like :func:`normalize_code`.
    The URL's signature is not checked here (see ``printouts.payload``).
    """
    stripped = text.strip()
    marker = stripped.lower().rfind("/r/")
    if marker >= 0 and "://" in stripped[:marker]:
        stripped = stripped[marker + 3 :].split("?", 1)[0].split("#", 1)[0]
    return normalize_code(stripped)

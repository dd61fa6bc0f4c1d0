"""The QR payload: ``BASE/r/CODE?s=SIG&l=LANG``, signed with a secret only this kit holds.

* ``CODE`` is the compact canonical code (15 symbols, no dashes).
* ``SIG`` is the first 50 bits of HMAC-SHA256(kit secret, ``"popup-kit/slip/v1:" + CODE``)
  written as 10 Crockford base32 symbols. The server can verify it before the kit has
  synced: it tries the key of each enrolled kit (a handful per deployment), so the URL
  carries no kit identifier. 50 bits plus rate limiting make forging impractical.
* ``LANG`` is the slip's two-letter language, so that every page the attendee reaches is
  in their language from the first scan. It is not signed: it only picks the wording, a
  signature covers the code alone (so an edited ``l`` changes nothing but the wording), and
  URLs printed before it existed still verify. A language code is not personal data.
* The URL is kept exactly as built (byte mode in the QR): the base URL comes from
  ``kit.toml`` and may contain a lower-case path, so it is not upper-cased for the QR's
  alphanumeric mode. A version 7 QR at level M holds 122 bytes, so a base URL of at most
  :data:`MAX_BASE_URL_LENGTH` (86) characters always fits version 7 or less; the default
  base gives version 4 (33 modules), the largest and easiest to scan.

No personal or health data is ever part of the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from printouts.codes import CODE_LENGTH, CodeError, compact_code, normalize_code

SIGNATURE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
SIGNATURE_LENGTH = 10  # 50 bits
QR_V7_M_BYTES = 122  # byte-mode capacity of a version 7 QR at error correction M
LANGUAGE_LENGTH = 2  # ISO 639-1
LANGUAGE_PARAM = "l"
_FIXED = len("/r/?s=&l=") + CODE_LENGTH + SIGNATURE_LENGTH + LANGUAGE_LENGTH
MAX_BASE_URL_LENGTH = QR_V7_M_BYTES - _FIXED  # 86
DEFAULT_LANGUAGE = "en"
_DOMAIN = b"popup-kit/slip/v1:"


class PayloadError(ValueError):
    """A URL that is not one of our referral URLs, or a malformed one."""


@dataclass(frozen=True)
class KitKey:
    """This kit's slip-signing secret (registered with the server by sync)."""

    kit_id: str
    secret: bytes

    @property
    def key_id(self) -> str:
        """A short public fingerprint of the secret, for logs and enrolment checks."""
        return hashlib.sha256(b"popup-kit/key-id:" + self.secret).hexdigest()[:12]


def new_kit_key(kit_id: str = "") -> KitKey:
    """A fresh slip-signing secret (256 bits); the kit keeps it sealed (popup_kit.vault)."""
    return KitKey(kit_id=kit_id, secret=secrets.token_bytes(32))


def _b32(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    total_bits = len(data) * 8
    out = []
    for i in range(length):
        shift = total_bits - 5 * (i + 1)
        out.append(SIGNATURE_ALPHABET[(number >> shift) & 31])
    return "".join(out)


def sign_code(code: str, secret: bytes) -> str:
    """The 10-symbol signature of ``code`` (any accepted spelling) under ``secret``."""
    mac = hmac.new(secret, _DOMAIN + compact_code(code).encode("ascii"), hashlib.sha256)
    return _b32(mac.digest(), SIGNATURE_LENGTH)


def verify_signature(code: str, sig: str, secret: bytes) -> bool:
    """True when ``sig`` is this secret's signature of ``code``; constant-time compare."""
    try:
        expected = sign_code(code, secret)
    except CodeError:
        return False
    return hmac.compare_digest(expected, sig.strip().upper())


def slip_url(
    base_url: str, code: str, key: KitKey | bytes, language: str = DEFAULT_LANGUAGE
) -> str:
    """``BASE/r/CODE?s=SIG&l=LANG`` for the slip's QR."""
    if len(language) != LANGUAGE_LENGTH or not (language.isascii() and language.isalpha()):
        raise PayloadError(f"a slip's language is a two-letter code, got {language!r}")
    secret = key.secret if isinstance(key, KitKey) else key
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PayloadError(f"server base URL must be http(s)://host[/path], got {base_url!r}")
    if parts.query or parts.fragment:
        raise PayloadError("server base URL must not have a query or fragment")
    if not base.isascii():
        raise PayloadError("server base URL must be ASCII (use the punycode host name)")
    if len(base) > MAX_BASE_URL_LENGTH:
        raise PayloadError(
            f"server base URL is {len(base)} characters; at most {MAX_BASE_URL_LENGTH} keep "
            "the slip's QR code small enough to scan (version 7)"
        )
    sig = sign_code(code, secret)
    return f"{base}/r/{compact_code(code)}?s={sig}&{LANGUAGE_PARAM}={language.lower()}"


def url_language(url: str) -> str:
    """The slip's language named in a referral URL; English for URLs without one."""
    values = parse_qs(urlsplit(url.strip()).query).get(LANGUAGE_PARAM, [])
    value = values[0].strip().lower() if len(values) == 1 else ""
    if len(value) == LANGUAGE_LENGTH and value.isascii() and value.isalpha():
        return value
    return DEFAULT_LANGUAGE


def parse_slip_url(url: str) -> tuple[str, str, str]:
    """Split a referral URL into ``(base, code, sig)``; ``code`` is canonical dashed.

    Raises :class:`PayloadError` for anything that is not ``http(s)://.../r/CODE?s=SIG``
    and :class:`~printouts.codes.CodeError` when the code's check character fails.
    """
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise PayloadError("not a referral URL: it is not a web address")
    head, sep, tail = parts.path.rpartition("/r/")
    if not sep or not tail or "/" in tail:
        raise PayloadError("not a referral URL: the address has no /r/CODE part")
    sigs = parse_qs(parts.query).get("s", [])
    if len(sigs) != 1 or not sigs[0]:
        raise PayloadError("not a referral URL: the signature (?s=...) is missing")
    sig = sigs[0].strip().upper()
    if len(sig) != SIGNATURE_LENGTH or any(ch not in SIGNATURE_ALPHABET for ch in sig):
        raise PayloadError("not a referral URL: the signature is malformed")
    code = normalize_code(tail)
    base = f"{parts.scheme}://{parts.netloc}{head}"
    return base, code, sig

"""Reading a referral QR from a photo or screenshot (pyzbar), then checking it.

Each way a scan can fail has its own error kind and message, so the volunteer knows
whether to retake the photo, type the code, or distrust the slip.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from printouts.codes import CodeError
from printouts.payload import PayloadError, parse_slip_url, verify_signature

ZBAR_PACKAGE = "libzbar0"
ScanErrorKind = Literal[
    "zbar_missing", "unreadable_image", "no_qr", "foreign", "bad_code", "forged"
]
SCAN_ERROR_KINDS: tuple[ScanErrorKind, ...] = get_args(ScanErrorKind)
_SHOWN = 60  # characters of a foreign QR's text quoted in the message


class ScanError(Exception):
    """A scan that did not give a trustworthy referral; ``kind`` says which way.

    zbar_missing: the zbar library is not installed (the message names the package);
    unreadable_image: the file is not an image; no_qr: no QR code could be read;
    foreign: a QR code that is not a referral slip; bad_code: a referral URL whose code
    fails its check character; forged: the signature is not this kit's.
    """

    def __init__(self, kind: ScanErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ScanErrorKind = kind


@dataclass(frozen=True)
class ScannedSlip:
    url: str
    base: str
    code: str  # canonical dashed
    signature: str


def _zbar_decode() -> Any:
    try:
        from pyzbar.pyzbar import decode
    except (ImportError, OSError) as exc:
        raise ScanError(
            "zbar_missing",
            f"cannot scan: the zbar library is missing; install it with "
            f"`sudo apt-get install {ZBAR_PACKAGE}`",
        ) from exc
    return decode


def _open_image(image: Any) -> Any:
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, bytes):
        source: Any = io.BytesIO(image)
        name = "the image"
    elif isinstance(image, str | Path):
        source, name = image, f"the image {image}"
    else:
        return image.convert("L")
    try:
        with Image.open(source) as opened:
            return opened.convert("L")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ScanError("unreadable_image", f"cannot open {name}: {why}") from exc


def decode_qr_texts(image: Any) -> list[str]:
    """Texts of the QR codes in ``image`` (a path, PNG/JPEG bytes or a PIL image).

    Tries the image as it is, then with stretched contrast, thresholded, at half size
    (a soft phone photo sharpens when shrunk) and at double size (a small screenshot).
    """
    decode = _zbar_decode()
    from PIL import Image, ImageOps
    from pyzbar.pyzbar import ZBarSymbol

    img = _open_image(image)

    def binary(gray: Any) -> Any:
        return gray.point(lambda v: 255 if v > 128 else 0)

    def attempts() -> Iterator[Any]:
        yield img
        stretched = ImageOps.autocontrast(img, cutoff=2)
        yield stretched
        yield binary(stretched)
        if min(img.size) >= 400:
            half = stretched.resize((img.width // 2, img.height // 2), Image.Resampling.BOX)
            yield half
            yield binary(half)
        if max(img.size) < 1200:
            yield stretched.resize((img.width * 2, img.height * 2), Image.Resampling.BICUBIC)

    for candidate in attempts():
        found = [r.data.decode("utf-8", "replace") for r in decode(candidate, [ZBarSymbol.QRCODE])]
        if found:
            return found
    return []


def _quoted(text: str) -> str:
    printable = "".join(ch if ch.isprintable() else "?" for ch in text)
    return printable if len(printable) <= _SHOWN else printable[: _SHOWN - 3] + "..."


def check_referral_url(url: str, secrets: Sequence[bytes]) -> ScannedSlip:
    """Check the code and signature of a scanned URL (also what a USB barcode scanner
    types); raises :class:`ScanError` (foreign, bad_code or forged)."""
    try:
        base, code, sig = parse_slip_url(url)
    except PayloadError as exc:
        raise ScanError(
            "foreign", f"this QR code is not a referral slip ({exc}); it reads: {_quoted(url)}"
        ) from exc
    except CodeError as exc:
        raise ScanError(
            "bad_code",
            f"the referral code in this QR code is damaged or altered ({exc}); "
            "type the code printed on the slip instead",
        ) from exc
    if not any(verify_signature(code, sig, s) for s in secrets):
        raise ScanError(
            "forged",
            f"the signature of code {code} does not match this kit's key: "
            "the slip was not made by this kit, or it was altered",
        )
    return ScannedSlip(url=url, base=base, code=code, signature=sig)


def scan_referral(image: Any, secrets: Sequence[bytes]) -> ScannedSlip:
    """Decode the image's QR and check it against this kit's key(s).

    ``image`` is a path, PNG/JPEG bytes or a PIL image. Raises :class:`ScanError`; with
    several QR codes in the image the first genuine slip wins, else the first error.
    """
    texts = decode_qr_texts(image)
    if not texts:
        raise ScanError(
            "no_qr",
            "no QR code could be read from the image: it is damaged, blurred or cut off. "
            "Retake the photo closer and flatter, or type the code printed on the slip",
        )
    errors: list[ScanError] = []
    for text in texts:
        try:
            return check_referral_url(text, secrets)
        except ScanError as exc:
            errors.append(exc)
    raise errors[0]

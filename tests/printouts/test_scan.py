"""Scanning a referral QR back from a photo or screenshot, and each way it can fail."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from printouts.codes import new_referral_code
from printouts.payload import KitKey, slip_url
from printouts.render import FORMATS, SlipData, render_emergency_slip, render_slip
from printouts.scan import (
    ZBAR_PACKAGE,
    ScanError,
    check_referral_url,
    decode_qr_texts,
    scan_referral,
)
from tests.printouts.conftest import photograph, rasterise

MakeSlip = Callable[..., SlipData]
OTHER_KIT = b"another kit's slip key, 32 bytes"


def _qr(text: str) -> Any:
    import qrcode

    return qrcode.make(text).get_image()


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize(("angle", "seed"), [(4.0, 1), (-7.0, 2)])
def test_photographed_slip_scans(
    make_slip: MakeSlip, kit_key: KitKey, tmp_path: Path, fmt: str, angle: float, seed: int
) -> None:
    data = make_slip(level="urgent")
    photo = photograph(rasterise(render_slip(data, fmt))[0], angle=angle, seed=seed)
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=60)  # a phone's JPEG
    found = scan_referral(path, [OTHER_KIT, kit_key.secret])
    assert found.url == data.url and found.code == data.code
    assert found.base == "https://triage.example.org"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_badly_faded_and_blurred_photo_scans_after_retries(
    make_slip: MakeSlip, kit_key: KitKey, fmt: str
) -> None:
    from pyzbar.pyzbar import ZBarSymbol, decode

    data = make_slip()
    page = rasterise(render_slip(data, fmt))[0]
    photo = photograph(page, angle=4.0, seed=2, blur=1.8, contrast=0.3)
    assert decode(photo, [ZBarSymbol.QRCODE]) == []  # too soft for a single plain attempt
    assert scan_referral(photo, [kit_key.secret]).url == data.url


def test_emergency_slip_photo_scans(make_slip: MakeSlip, kit_key: KitKey) -> None:
    data = make_slip(level="emergency")
    photo = photograph(rasterise(render_emergency_slip(data, "a6"))[0], angle=-3.0)
    assert scan_referral(photo, [kit_key.secret]).code == data.code


def test_screenshot_bytes_scan(make_slip: MakeSlip, kit_key: KitKey) -> None:
    import io

    data = make_slip()
    page = rasterise(render_slip(data, "receipt80"), dpi=96)[0]  # a small screenshot
    buf = io.BytesIO()
    page.save(buf, format="PNG")
    assert scan_referral(buf.getvalue(), [kit_key.secret]).url == data.url


def test_large_phone_photo_scans(make_slip: MakeSlip, kit_key: KitKey) -> None:
    data = make_slip()
    page = rasterise(render_slip(data, "receipt80"), dpi=500)[0]
    photo = photograph(page, angle=5.0).resize((page.width * 3 // 2, page.height * 3 // 2))
    assert max(photo.size) > 4000
    assert scan_referral(photo, [kit_key.secret]).code == data.code


# --- each failure has its own kind and message ----------------------------------------


def _qr_box(page: Any) -> tuple[int, int, int, int]:
    from pyzbar.pyzbar import decode

    (sym,) = decode(page)
    r = sym.rect
    return r.left, r.top, r.left + r.width, r.top + r.height


def test_damaged_qr(make_slip: MakeSlip, kit_key: KitKey) -> None:
    page = rasterise(render_slip(make_slip(), "receipt80"))[0].convert("L")
    left, top, right, bottom = _qr_box(page)
    third = (bottom - top) // 3
    ImageDraw.Draw(page).rectangle((left, top + third, right, bottom - third), fill=0)
    with pytest.raises(ScanError, match="no QR code could be read") as err:
        scan_referral(page, [kit_key.secret])
    assert err.value.kind == "no_qr"
    assert "type the code printed on the slip" in str(err.value)


def test_image_without_any_code(kit_key: KitKey) -> None:
    blank = Image.new("L", (600, 800), 230)
    ImageDraw.Draw(blank).text((40, 40), "a menu, not a slip", fill=0)
    with pytest.raises(ScanError) as err:
        scan_referral(blank, [kit_key.secret])
    assert err.value.kind == "no_qr"


@pytest.mark.parametrize(
    "content",
    [
        "https://shop.example.com/offer?id=42",
        "WIFI:S:market;T:WPA;P:secret;;",
        "https://triage.example.org/r/ABCDE",  # our address, but no signature
    ],
)
def test_foreign_qr(kit_key: KitKey, content: str) -> None:
    with pytest.raises(ScanError, match="not a referral slip") as err:
        scan_referral(_qr(content), [kit_key.secret])
    assert err.value.kind == "foreign"
    assert content[:20] in str(err.value)


def test_foreign_qr_message_is_one_printable_line(kit_key: KitKey) -> None:
    with pytest.raises(ScanError) as err:
        check_referral_url("line one\nline two\x1b[31m" + "x" * 200, [kit_key.secret])
    message = str(err.value)
    assert err.value.kind == "foreign" and message.isprintable() and len(message) < 200


def test_bad_check_character(kit_key: KitKey) -> None:
    url = slip_url("https://triage.example.org", new_referral_code(), kit_key)
    i = url.index("/r/") + 3
    bad = url[:i] + ("0" if url[i] != "0" else "1") + url[i + 1 :]
    with pytest.raises(ScanError, match="check character does not match") as err:
        scan_referral(_qr(bad), [kit_key.secret])
    assert err.value.kind == "bad_code"


def test_forged_signature(kit_key: KitKey) -> None:
    forged = slip_url("https://triage.example.org", new_referral_code(), b"guessed key" * 3)
    with pytest.raises(ScanError, match="does not match this kit's key") as err:
        scan_referral(_qr(forged), [kit_key.secret])
    assert err.value.kind == "forged"


def test_altered_code_with_a_valid_check_character_is_forged(kit_key: KitKey) -> None:
    # Swapping in another valid code keeps the check character right; the signature
    # is what catches it.
    url = slip_url("https://triage.example.org", new_referral_code(), kit_key)
    other = new_referral_code().replace("-", "")
    i = url.index("/r/") + 3
    altered = url[:i] + other + url[i + 15 :]
    with pytest.raises(ScanError) as err:
        scan_referral(_qr(altered), [kit_key.secret])
    assert err.value.kind == "forged"


def test_unreadable_file(tmp_path: Path, kit_key: KitKey) -> None:
    path = tmp_path / "not-an-image.png"
    path.write_text("hello")
    with pytest.raises(ScanError, match="cannot open the image") as err:
        scan_referral(path, [kit_key.secret])
    assert err.value.kind == "unreadable_image"
    with pytest.raises(ScanError, match="No such file") as err:
        scan_referral(tmp_path / "missing.jpg", [kit_key.secret])
    assert err.value.kind == "unreadable_image"


def test_missing_zbar_library_names_the_package(
    monkeypatch: pytest.MonkeyPatch, kit_key: KitKey, make_slip: MakeSlip
) -> None:
    import ctypes.util

    real_find = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        return None if name == "zbar" else real_find(name)

    # pyzbar looks for the shared library when it is first imported: import it afresh
    # on a machine where the library cannot be found.
    for name in [m for m in sys.modules if m == "pyzbar" or m.startswith("pyzbar.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(ctypes.util, "find_library", find_library)
    page = rasterise(render_slip(make_slip(), "receipt80"))[0]
    with pytest.raises(ScanError) as err:
        scan_referral(page, [kit_key.secret])
    assert err.value.kind == "zbar_missing"
    message = str(err.value)
    assert f"apt-get install {ZBAR_PACKAGE}" in message and "\n" not in message


def test_several_codes_in_one_image_the_genuine_one_wins(
    make_slip: MakeSlip, kit_key: KitKey
) -> None:
    data = make_slip()
    genuine = rasterise(render_slip(data, "receipt80"))[0]
    menu = _qr("https://shop.example.com/menu").convert("L")
    both = Image.new("L", (genuine.width + menu.width + 40, max(genuine.height, menu.height)), 255)
    both.paste(menu, (0, 0))
    both.paste(genuine, (menu.width + 40, 0))
    assert len(decode_qr_texts(both)) == 2
    assert scan_referral(both, [kit_key.secret]).code == data.code

from __future__ import annotations

from typing import Any

import pytest

from printouts.codes import CodeError, new_referral_code
from printouts.payload import (
    MAX_BASE_URL_LENGTH,
    KitKey,
    PayloadError,
    parse_slip_url,
    sign_code,
    slip_url,
    url_language,
    verify_signature,
)
from printouts.qr import qr_matrix, qr_text_art


def test_url_roundtrip_and_signature(kit_key: KitKey) -> None:
    code = new_referral_code()
    url = slip_url("https://triage.example.org/", code, kit_key)
    compact = code.replace("-", "")
    assert url.startswith(f"https://triage.example.org/r/{compact}?s=")
    assert url.isascii()
    base, parsed, sig = parse_slip_url(url)
    assert (base, parsed) == ("https://triage.example.org", code)
    assert verify_signature(parsed, sig, kit_key.secret)
    assert verify_signature(code.lower(), sig.lower(), kit_key.secret)
    other = KitKey("kit-b", b"x" * 32)
    assert not verify_signature(parsed, sig, other.secret)
    assert not verify_signature(new_referral_code(), sig, kit_key.secret)
    assert sign_code(code, kit_key.secret) == sig


def test_url_with_path_base(kit_key: KitKey) -> None:
    code = new_referral_code()
    url = slip_url("https://health.example.org/booths/triage", code, kit_key)
    base, parsed, _ = parse_slip_url(url)
    assert base == "https://health.example.org/booths/triage" and parsed == code


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "WIFI:S:market;T:WPA;P:secret;;",
        "https://triage.example.org/r/ABC",  # no signature
        "https://triage.example.org/x/ABCDE?s=0123456789",
        "https://triage.example.org/r/{code}?s=short",
    ],
)
def test_foreign_urls_are_rejected(url: str) -> None:
    with pytest.raises((PayloadError, CodeError)):
        parse_slip_url(url.format(code=new_referral_code()))


def test_bad_check_character_in_url(kit_key: KitKey) -> None:
    code = new_referral_code()
    url = slip_url("https://triage.example.org", code, kit_key)
    i = url.index("/r/") + 3
    bad = url[:i] + ("0" if url[i] != "0" else "1") + url[i + 1 :]
    with pytest.raises(CodeError, match="check character"):
        parse_slip_url(bad)


@pytest.mark.parametrize(
    "base",
    [
        "https://triage.example.org",  # the default: version 4
        "https://referrals.regional-health-board.example/booths/north-district",
        "https://" + "a" * (MAX_BASE_URL_LENGTH - len("https://.org")) + ".org",  # the longest
    ],
)
def test_any_accepted_base_fits_qr_version_7_at_level_m(kit_key: KitKey, base: str) -> None:
    for i in range(20):
        url = slip_url(base, new_referral_code(), kit_key, ("en", "es")[i % 2])
        assert url.endswith(("&l=en", "&l=es"))
        reference = qrcode_for(url)  # level M, smallest version that holds the URL
        printed = qr_matrix(url)
        assert printed.version == reference.version <= 7
        assert [list(r) for r in printed.rows] == reference.get_matrix()
    if base == "https://triage.example.org":
        assert qr_matrix(slip_url(base, new_referral_code(), kit_key, "es")).version == 4
    if len(base) == MAX_BASE_URL_LENGTH:  # the longest URL fills version 7 exactly
        assert len(slip_url(base, new_referral_code(), kit_key, "es")) == 122


def test_the_language_travels_beside_the_signature(kit_key: KitKey) -> None:
    code = new_referral_code()
    spanish = slip_url("https://triage.example.org", code, kit_key, "es")
    base, parsed, sig = parse_slip_url(spanish)
    assert (base, parsed) == ("https://triage.example.org", code)
    assert url_language(spanish) == "es"
    # Not signed: the same signature whatever the language, so an edited ``l`` changes
    # only the wording, and slips printed before the language was added still verify.
    assert sig == sign_code(code, kit_key.secret)
    assert parse_slip_url(slip_url("https://triage.example.org", code, kit_key, "en"))[2] == sig
    old = f"https://triage.example.org/r/{code.replace('-', '')}?s={sig}"
    assert parse_slip_url(old) == (base, parsed, sig) and url_language(old) == "en"
    for odd in ("&l=", "&l=spanish", "&l=e%3C", "&l=es&l=en"):
        assert url_language(old + odd) == "en"


@pytest.mark.parametrize("language", ["", "e", "spa", "e<", "1a"])
def test_a_slip_language_is_two_letters(kit_key: KitKey, language: str) -> None:
    with pytest.raises(PayloadError, match="two-letter"):
        slip_url("https://triage.example.org", new_referral_code(), kit_key, language)


def qrcode_for(url: str) -> Any:
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    qr.add_data(url)
    qr.make(fit=True)
    return qr


def test_a_base_too_long_for_a_small_qr_is_refused(kit_key: KitKey) -> None:
    base = "https://" + "a" * (MAX_BASE_URL_LENGTH + 1 - len("https://.org")) + ".org"
    with pytest.raises(PayloadError, match=f"at most {MAX_BASE_URL_LENGTH}"):
        slip_url(base, new_referral_code(), kit_key)


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("triage.example.org", "must be http"),
        ("https://triage.example.org/?x=1", "query or fragment"),
        ("https://triage.exämple.org", "ASCII"),
    ],
)
def test_bad_base_urls(kit_key: KitKey, base: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        slip_url(base, new_referral_code(), kit_key)


def test_text_art_shape(kit_key: KitKey) -> None:
    url = slip_url("https://triage.example.org", new_referral_code(), kit_key)
    art = qr_text_art(url)
    lines = art.splitlines()
    size = qr_matrix(url).size
    assert len(lines) == (size + 1) // 2
    assert all(len(line) == size for line in lines)
    # The quiet zone is light: drawn as full blocks on the first line.
    assert set(lines[0]) == {"█"}
    assert set(qr_text_art(url, dark_on_light=False).splitlines()[0]) == {" "}


def test_text_art_scans_back(kit_key: KitKey) -> None:
    from PIL import Image

    from printouts.scan import decode_qr_texts

    url = slip_url("https://triage.example.org", new_referral_code(), kit_key)
    lines = qr_text_art(url).splitlines()
    # Each character is one module wide and two tall; a block is light on a dark terminal.
    scale = 6
    img = Image.new("L", (len(lines[0]) * scale, len(lines) * 2 * scale), 0)
    for y, line in enumerate(lines):
        for x, ch in enumerate(line):
            top = ch in "█▀"
            bottom = ch in "█▄"
            for half, lit in ((0, top), (1, bottom)):
                if lit:
                    box = (x * scale, (2 * y + half) * scale)
                    img.paste(255, (*box, box[0] + scale, box[1] + scale))
    assert decode_qr_texts(img) == [url]

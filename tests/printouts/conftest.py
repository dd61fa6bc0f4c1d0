from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from printouts.codes import new_referral_code
from printouts.payload import KitKey, new_kit_key, slip_url
from printouts.render import SlipData
from tests.support.cups import CupsUnavailable, PrivateCups, private_cups

THERMAL_DPI = 203


def rasterise(pdf: bytes, dpi: int = THERMAL_DPI) -> list[Any]:
    """Pages of ``pdf`` as greyscale PIL images at ``dpi``."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        return [doc[i].render(scale=dpi / 72, grayscale=True).to_pil() for i in range(len(doc))]
    finally:
        doc.close()


def pdf_text(pdf: bytes) -> str:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()


def page_texts(pdf: bytes) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()


def flat(text: str) -> str:
    """Extracted text with line breaks and runs of spaces made single spaces."""
    return " ".join(text.split())


def photograph(
    page: Any, *, angle: float = 6.0, seed: int = 7, blur: float = 1.3, contrast: float = 0.5
) -> Any:
    """A phone-photo-like copy of a rendered page: lying on a grey table under uneven
    light, tilted, out of focus by ``blur`` pixels, faded to ``contrast``, sensor noise,
    a smudge.
    """
    from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter

    rng = random.Random(seed)
    paper = page.convert("L")
    paper = ImageEnhance.Contrast(paper).enhance(contrast)  # faded thermal print
    margin = 120
    table = Image.new("L", (paper.width + 2 * margin, paper.height + 2 * margin), 90)
    table.paste(paper, (margin, margin))
    photo = table.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=90)
    # light falling off from one side
    shade = Image.linear_gradient("L").resize(photo.size).rotate(90 + rng.uniform(-20, 20))
    shade = shade.point(lambda v: 185 + v * 70 // 255)
    photo = ImageChops.multiply(photo, shade)
    photo = photo.filter(ImageFilter.GaussianBlur(blur))
    # sensor noise, seeded (spread like Gaussian noise of sigma 30)
    noise = Image.frombytes("L", photo.size, rng.randbytes(photo.width * photo.height))
    noise = noise.point(lambda v: 128 + (v - 128) * 30 // 74)
    photo = Image.blend(photo, noise, 0.12)
    # a thumb smudge near the top of the slip
    draw = ImageDraw.Draw(photo)
    x = margin + rng.randint(0, max(1, paper.width // 2))
    draw.ellipse((x, margin + 10, x + 60, margin + 50), fill=150)
    return photo


@pytest.fixture
def kit_key(tmp_path: Path) -> KitKey:
    return new_kit_key("kit-test")


@pytest.fixture
def make_slip(kit_key: KitKey) -> Callable[..., SlipData]:
    def make(**over: Any) -> SlipData:
        code = over.pop("code", new_referral_code())
        base = over.pop("base_url", "https://triage.example.org")
        language = over.get("language", "en")
        fields: dict[str, Any] = {
            "code": code,
            "url": "" if not code or "url" in over else slip_url(base, code, kit_key, language),
            "level": "routine",
            "language": language,
            "booth_name": "Night market booth",
            "event": "Late market",
            "visit_date": dt.date(2026, 11, 22),
            "reasons": ["A single warning sign that a clinician should review"],
            "rule_ids": ["RO1"],
            "emergency_number": "999",
            "consent": {"c1": True, "c2": True, "c3": False, "c4": True, "c5": False},
        }
        fields.update(over)
        return SlipData(**fields)

    return make


@pytest.fixture(scope="session")
def cups() -> Iterator[PrivateCups]:
    """This worker's private cupsd (tests.support.cups), for the whole session.

    Skips where it cannot run (not root, CUPS or cups-pdf not installed), unless
    ``POPUP_KIT_REQUIRE_CUPS=1`` (set by CI, which installs them): there it fails.
    """
    with ExitStack() as stack:
        try:
            server = stack.enter_context(private_cups())
        except CupsUnavailable as exc:
            if os.environ.get("POPUP_KIT_REQUIRE_CUPS") == "1":
                pytest.fail(f"a private CUPS with cups-pdf is required here: {exc}")
            pytest.skip(str(exc))
        yield server


@pytest.fixture
def cups_server(cups: PrivateCups, monkeypatch: pytest.MonkeyPatch) -> PrivateCups:
    """The private cupsd, running, with ``CUPS_SERVER`` pointing ``lp`` and ``lpstat`` at it."""
    if not cups.running:
        cups.start()
    monkeypatch.setenv("CUPS_SERVER", str(cups.socket))
    return cups

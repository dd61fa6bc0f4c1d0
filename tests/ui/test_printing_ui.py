"""Printing at the end of a visit, reprinting from the list, and the QR on screen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from popup_kit.config import KitConfig
from popup_kit.ui.app import BoothApp
from popup_kit.ui.screens.outcome import SavedScreen
from popup_kit.ui.screens.printing import QrScreen
from popup_kit.ui.screens.visits import VisitDetailScreen
from popup_kit.vault import kit_key
from printouts.payload import parse_slip_url, verify_signature
from printouts.scan import decode_qr_texts
from tests.printouts.conftest import pdf_text
from tests.ui.conftest import Recorded
from tests.ui.driver import SELF_CARE, answer_until_done, begin_visit, start_day

SIZE = (80, 24)
DARK = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}


def art_to_image(art: str, scale: int = 8) -> Image.Image:
    """The half-block drawing as the pixels a phone camera would see."""
    lines = art.splitlines()
    width = max(len(line) for line in lines)
    img = Image.new("L", (width * scale, len(lines) * 2 * scale), 255)
    for y, line in enumerate(lines):
        for x, ch in enumerate(line):
            top, bottom = DARK[ch]
            for half, dark in ((0, top), (1, bottom)):
                if dark:
                    box = (
                        x * scale,
                        (2 * y + half) * scale,
                        (x + 1) * scale,
                        (2 * y + half + 1) * scale,
                    )
                    img.paste(0, box)
    return img


async def save_a_visit(pilot: Any, app: BoothApp) -> SavedScreen:
    await start_day(pilot, app)
    await begin_visit(pilot)
    await answer_until_done(pilot, app, SELF_CARE)
    await pilot.press("enter", "s")
    await pilot.pause()
    screen = next(s for s in app.screen_stack if isinstance(s, SavedScreen))
    await app.workers.wait_for_complete()
    await pilot.pause()
    return screen


async def test_slip_is_printed_or_saved_at_the_end_of_a_visit(
    make_app: Callable[[], BoothApp], config: KitConfig
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        saved = await save_a_visit(pilot, app)
        status = str(saved.query_one("#print-status").render())
        assert "no printer set" in status and "press q" in status.lower()
    pdf = Path(config.slips_dir / f"{saved.code}-receipt80.pdf")
    text = " ".join(pdf_text(pdf.read_bytes()).split())
    assert saved.code in text and "Self-care" in text


async def test_qr_on_screen_scans_to_the_signed_url(
    make_app: Callable[[], BoothApp], config: KitConfig
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        saved = await save_a_visit(pilot, app)
        assert isinstance(app.screen, QrScreen)  # no printer: shown without a key
        art = str(app.screen.query_one("#qr-art").render())
        region = app.screen.query_one("#qr-art").region
        assert region.height <= SIZE[1] - 2 and region.width <= SIZE[0]  # fits 80x24
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, SavedScreen)
        await pilot.press("q")  # and again on request; Enter then closes it
        await pilot.pause()
        assert isinstance(app.screen, QrScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SavedScreen)
    (url,) = decode_qr_texts(art_to_image(art))
    _, code, sig = parse_slip_url(url)
    assert code == saved.code
    key = kit_key(config)
    assert verify_signature(code, sig, key.secret)


async def test_reprint_from_the_visit_list(
    make_app: Callable[[], BoothApp], config: KitConfig, recorded: Recorded
) -> None:
    code = recorded(SELF_CARE).code
    pdf = config.slips_dir / f"{code}-receipt80.pdf"
    assert not pdf.exists()  # saved without its slip: only the reprint makes one
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_day(pilot, app)
        await pilot.press("l", "enter")
        await pilot.pause()
        assert isinstance(app.screen, VisitDetailScreen)
        await pilot.press("p")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert pdf.exists()
        assert any("not printed" in str(n.message).lower() for n in app._notifications)

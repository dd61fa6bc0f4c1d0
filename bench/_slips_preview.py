"""Render every printout in every format to PNG at 203 dpi, to look at them.

Usage: uv run python bench/_slips_preview.py OUT_DIR
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _slips_samples as samples
from printouts.render import (
    FORMATS,
    render_consent_copy,
    render_day_summary,
    render_emergency_slip,
    render_slip,
)

DPI = 203


def save_png(pdf: bytes, path: Path) -> list[Path]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        out = []
        for i in range(len(doc)):
            page_path = path.with_name(f"{path.stem}-p{i + 1}.png")
            doc[i].render(scale=DPI / 72, grayscale=True).to_pil().save(page_path)
            out.append(page_path)
        return out
    finally:
        doc.close()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "slip-preview")
    out.mkdir(parents=True, exist_ok=True)
    key = samples.kit_key()
    printouts: dict[str, Callable[[str], bytes]] = {
        "slip-urgent": lambda f: render_slip(samples.referral(key), f),
        "slip-self_care": lambda f: render_slip(
            samples.referral(key, "self_care", reasons=[], rule_ids=[]), f
        ),
        "slip-consent_refused": lambda f: render_slip(
            samples.referral(key, "consent_refused", code="", url="", reasons=[]), f
        ),
        "slip-greek-cyrillic": lambda f: render_slip(
            samples.referral(key, booth_name="Περίπτερο Αθήνα", event="Ярмарка здоровья"), f
        ),
        "slip-es": lambda f: render_slip(samples.referral(key, language="es"), f),
        "emergency": lambda f: render_emergency_slip(samples.emergency(key), f),
        "consent": lambda f: render_consent_copy(samples.referral(key), f),
        "summary": lambda f: render_day_summary(samples.day_summary(), f),
    }
    for name, render in printouts.items():
        for fmt in FORMATS:
            for page in save_png(render(fmt), out / f"{name}-{fmt}.png"):
                print(page)


if __name__ == "__main__":
    main()

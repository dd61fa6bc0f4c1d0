"""Render every printout in every format to PNG, to look at them: receipts at the
thermal printer's 203 dpi, A6 at 150 dpi.

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
ES_REASON = "Dolor constante que le despierta por la noche, con más de 50 años"
ES_CES = (
    "Adormecimiento nuevo o que empeora alrededor del ano o los genitales, o cambios en la "
    "vejiga o el intestino: posible compresión de los nervios de la vejiga y el intestino "
    "(síndrome de cola de caballo)"
)


def save_png(pdf: bytes, path: Path, dpi: int = DPI) -> list[Path]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        out = []
        for i in range(len(doc)):
            page_path = path.with_name(f"{path.stem}-p{i + 1}.png")
            doc[i].render(scale=dpi / 72, grayscale=True).to_pil().save(page_path)
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
        "slip-placeholder": lambda f: render_slip(
            samples.referral(key, server_placeholder=True), f
        ),
        "slip-placeholder-es": lambda f: render_slip(
            samples.referral(key, language="es", server_placeholder=True, reasons=[ES_REASON]), f
        ),
        "slip-void": lambda f: render_slip(
            samples.referral(key, void_reason="Recorded twice by mistake"), f
        ),
        "slip-replaced-es": lambda f: render_slip(
            samples.referral(key, language="es", superseded_by=2, reasons=[ES_REASON]), f
        ),
        "emergency": lambda f: render_emergency_slip(samples.emergency(key), f),
        "emergency-es": lambda f: render_emergency_slip(
            samples.emergency(key, language="es", reasons=[ES_CES], server_placeholder=True), f
        ),
        "emergency-void-es": lambda f: render_emergency_slip(
            samples.emergency(key, language="es", reasons=[ES_CES], void_reason="Duplicada"), f
        ),
        "consent": lambda f: render_consent_copy(samples.referral(key), f),
        "consent-es": lambda f: render_consent_copy(
            samples.referral(key, language="es", consent_context={}), f
        ),
        "consent-void": lambda f: render_consent_copy(
            samples.referral(key, void_reason="Recorded twice by mistake"), f
        ),
        "summary": lambda f: render_day_summary(samples.day_summary(), f),
        "summary-placeholder-es": lambda f: render_day_summary(
            samples.day_summary(language="es", server_placeholder=True), f
        ),
    }
    for name, render in printouts.items():
        for fmt in FORMATS:
            dpi = 150 if fmt == "a6" else DPI
            for page in save_png(render(fmt), out / f"{name}-{fmt}.png", dpi):
                print(page)


if __name__ == "__main__":
    main()

"""Slip generation time per format and scan time, next to a bare reportlab baseline.

The baseline is a one-page PDF with one line of text in a built-in font, made in the
same run, so the ratio shows what the layout, the embedded font and the QR cost. Every
slip gets a new code, so its QR is encoded afresh as at the booth. The cold rows run a
new Python process: imports, fonts and the first PDF, against the same for the baseline.

Usage: uv run python bench/slips.py [--runs N] [--markdown]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _slips_samples as samples
from printouts.codes import new_referral_code
from printouts.payload import KitKey, slip_url
from printouts.render import (
    FORMATS,
    SlipData,
    render_consent_copy,
    render_day_summary,
    render_emergency_slip,
    render_slip,
)

TARGET_MS = 25.0
ROOT = Path(__file__).resolve().parent.parent
COLD_BASELINE = """
import io, time
t = time.perf_counter()
from reportlab.pdfgen import canvas
buf = io.BytesIO(); c = canvas.Canvas(buf, pagesize=(226.8, 400)); c.setFont("Helvetica", 9)
c.drawString(10, 380, "Your referral code K7M3Q-X9P2C-AW4T7"); c.showPage(); c.save()
print((time.perf_counter() - t) * 1000)
"""
COLD_SLIP = """
import time
t = time.perf_counter()
import datetime as dt
from printouts.render import SlipData, render_slip
from printouts.payload import slip_url
from printouts.codes import new_referral_code
code = new_referral_code()
render_slip(SlipData(code=code, url=slip_url("https://triage.example.org", code, b"k" * 32),
    level="urgent", language="en", booth_name="Booth", event="Event",
    visit_date=dt.date(2026, 11, 22), emergency_number="999"), "receipt80")
print((time.perf_counter() - t) * 1000)
"""


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cold_ms(script: str, runs: int) -> float:
    """Median over ``runs`` new processes of the time the script reports."""
    out = [
        float(
            subprocess.run(
                [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(out)


def baseline_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(226.8, 400))
    c.setFont("Helvetica", 9)
    c.drawString(10, 380, "Your referral code K7M3Q-X9P2C-AW4T7")
    c.showPage()
    c.save()
    return buf.getvalue()


def fresh(data: SlipData, key: KitKey) -> SlipData:
    code = new_referral_code()
    return dataclasses.replace(data, code=code, url=slip_url(samples.BASE_URL, code, key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--markdown", action="store_true", help="print a table for the README")
    args = parser.parse_args()

    import pypdfium2 as pdfium

    from printouts.qr import qr_matrix
    from printouts.scan import scan_referral

    key = samples.kit_key()
    urgent = samples.referral(key)
    emergency = samples.emergency(key)
    summary = samples.day_summary()
    runs = args.runs

    base = median_ms(baseline_pdf, runs)
    rows: list[tuple[str, float]] = []

    def each_new(render: Callable[[SlipData, str], bytes], data: SlipData, fmt: str) -> bytes:
        return render(fresh(data, key), fmt)

    for fmt in FORMATS:
        slip = functools.partial(each_new, render_slip, urgent, fmt)
        rows.append((f"referral slip {fmt}", median_ms(slip, runs)))

    def new_qr() -> object:
        code = new_referral_code()
        return qr_matrix(slip_url(samples.BASE_URL, code, key))

    rows.append(("(QR encoding alone, part of each slip)", median_ms(new_qr, runs)))
    for fmt in FORMATS:
        slip = functools.partial(each_new, render_emergency_slip, emergency, fmt)
        rows.append((f"emergency slip {fmt}", median_ms(slip, runs)))
    void = dataclasses.replace(urgent, void_reason="Recorded twice by mistake")
    rows.append(
        (
            "VOID slip receipt80 (band, watermark, no QR)",
            median_ms(lambda: render_slip(void, "receipt80"), runs),
        )
    )
    placeholder = dataclasses.replace(urgent, server_placeholder=True)
    rows.append(
        (
            "referral slip receipt80 with the placeholder-server note",
            median_ms(functools.partial(each_new, render_slip, placeholder, "receipt80"), runs),
        )
    )
    rows.append(
        (
            "consent copy receipt80",
            median_ms(lambda: render_consent_copy(urgent, "receipt80"), runs),
        )
    )
    rows.append(
        ("day summary receipt80", median_ms(lambda: render_day_summary(summary, "receipt80"), runs))
    )

    def raster(pdf: bytes) -> object:
        doc = pdfium.PdfDocument(pdf)
        return doc[0].render(scale=203 / 72, grayscale=True).to_pil()

    clean = raster(render_slip(urgent, "receipt80"))
    photo = samples.photo_of(raster(render_slip(urgent, "receipt58")))
    scan_runs = max(20, runs // 2)
    rows.append(
        (
            "scan: receipt80 at 203 dpi",
            median_ms(lambda: scan_referral(clean, [key.secret]), scan_runs),
        )
    )
    rows.append(
        (
            "scan: faded, blurred photo (retries)",
            median_ms(lambda: scan_referral(photo, [key.secret]), scan_runs),
        )
    )

    cold_base = cold_ms(COLD_BASELINE, args.cold_runs)
    cold_slip = cold_ms(COLD_SLIP, args.cold_runs)

    worst = max(ms for name, ms in rows if "slip receipt" in name)
    verdict = "OK" if worst <= TARGET_MS else "OVER"
    if args.markdown:
        print("| what | median ms | x baseline |")
        print("|---|---:|---:|")
        print(f"| baseline: bare reportlab page | {base:.2f} | 1.0 |")
        for name, ms in rows:
            print(f"| {name.strip()} | {ms:.2f} | {ms / base:.1f} |")
        print(f"| cold baseline: new process, import reportlab, bare page | {cold_base:.0f} | - |")
        print(
            f"| cold: new process, first referral slip receipt80 | {cold_slip:.0f} | "
            f"{cold_slip / cold_base:.1f} x cold baseline |"
        )
    else:
        print(f"runs per figure: {runs} (median after warm-up), cold: {args.cold_runs} processes")
        print(f"{'what':40} {'ms':>8} {'x baseline':>11}")
        print(f"{'baseline: bare reportlab page':40} {base:8.2f} {1.0:11.1f}")
        for name, ms in rows:
            print(f"{name:40} {ms:8.2f} {ms / base:11.1f}")
        print(f"{'cold baseline (new process)':40} {cold_base:8.0f} {1.0:11.1f}")
        print(
            f"{'cold first slip (new process)':40} {cold_slip:8.0f} {cold_slip / cold_base:11.1f}"
        )
    print(f"slowest receipt slip {worst:.2f} ms, target <= {TARGET_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()

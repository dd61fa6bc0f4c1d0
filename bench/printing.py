"""What the kit's checks cost when a slip is printed, against plain ``lp`` in the same run.

Both print the same receipt slip through a private cupsd to the cups-pdf virtual printer
(tests/support/cups.py; needs root and the cups and printer-driver-cups-pdf packages):
the baseline submits with ``lp`` and polls ``lpstat`` every 10 ms until CUPS has finished
the job; the kit's ``print_pdf`` checks the queue first (``lpstat -r``, ``-p``, ``-a``),
passes the paper size and watches the job the same way until it is finished. Also timed:
the queue check alone, and the refusal of a paused printer (nothing is sent). cups-pdf's
own work (pdftops and Ghostscript) dominates both printing figures.

Usage: uv run python bench/printing.py [--runs N] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _slips_samples as samples
from printouts.printing import check_queue, media_option, print_pdf
from printouts.render import render_slip
from tests.support.cups import CupsUnavailable, private_cups


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    pdf = render_slip(samples.referral(samples.kit_key()), "receipt80")
    work = Path(tempfile.mkdtemp(prefix="print-bench-"))
    path = work / "slip.pdf"
    path.write_bytes(pdf)
    try:
        with private_cups() as cups:
            os.environ["CUPS_SERVER"] = str(cups.socket)
            os.environ["LC_ALL"] = "C"
            printer = cups.add_pdf_printer()
            paused = cups.add_pdf_printer()
            cups.run("cupsdisable", paused.name)
            lp, lpstat = shutil.which("lp"), shutil.which("lpstat")
            assert lp and lpstat

            def plain_lp(*options: str) -> None:
                subprocess.run(
                    [lp, "-d", printer.name, *options, str(path)], check=True, capture_output=True
                )
                while subprocess.run(
                    [lpstat, "-o", printer.name], capture_output=True, text=True
                ).stdout.strip():
                    time.sleep(0.01)

            def kit() -> None:
                result = print_pdf(pdf, printer.name, work / "saved", "slip.pdf")
                assert result.printed, result.message

            def refused() -> None:
                result = print_pdf(pdf, paused.name, work / "saved", "slip.pdf")
                assert result.problem == "paused"

            base = median_ms(plain_lp, args.runs)
            sized = ("-o", f"media={media_option(pdf)}", "-o", "print-scaling=none")
            rows = [
                (
                    "plain lp with the kit's paper size options, polled the same",
                    median_ms(lambda: plain_lp(*sized), args.runs),
                ),
                ("print_pdf, receipt80 slip, until CUPS finished it", median_ms(kit, args.runs)),
                (
                    "queue check alone (lpstat -r, -p, -a)",
                    median_ms(lambda: check_queue(printer.name, lpstat=lpstat, timeout=20), 30),
                ),
                ("refusal of a paused printer (nothing sent)", median_ms(refused, 30)),
            ]
    except CupsUnavailable as exc:
        sys.exit(f"bench/printing.py: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.markdown:
        print("| what | median ms | x baseline |")
        print("|---|---:|---:|")
        print(f"| baseline: plain lp, polled until CUPS finished it | {base:.0f} | 1.00 |")
        for name, ms in rows:
            print(f"| {name} | {ms:.0f} | {ms / base:.2f} |")
    else:
        print(f"runs per figure: {args.runs} (median after one warm-up)")
        print(f"{'baseline: plain lp, polled until finished':52} {base:8.0f} ms {1:6.2f}")
        for name, ms in rows:
            print(f"{name:52} {ms:8.0f} ms {ms / base:6.2f}")


if __name__ == "__main__":
    main()

"""Printing through a real CUPS: a private cupsd with cups-pdf virtual printers
(tests.support.cups). What each test prints comes out as a PDF written by cups-pdf, which
is measured, rasterised and scanned like paper."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from printouts.printing import PrintResult, media_option, page_size_mm, print_pdf, slip_filename
from printouts.render import FORMATS, SlipData, render_day_summary, render_slip
from tests.printouts.conftest import rasterise
from tests.support.cups import PdfPrinter, PrivateCups, private_cups

MakeSlip = Callable[..., SlipData]
# The trap of a real thermal driver: a small label as the queue's default page size.
LABEL_DEFAULT = "PageSize=Custom.58x65mm"
MM = 72 / 25.4


def _decode(page: Any) -> list[str]:
    from pyzbar.pyzbar import ZBarSymbol, decode

    return [s.data.decode("ascii") for s in decode(page, [ZBarSymbol.QRCODE])]


def _qr_width(page: Any) -> int:
    from pyzbar.pyzbar import ZBarSymbol, decode

    (symbol,) = decode(page, [ZBarSymbol.QRCODE])
    return int(symbol.rect.width)


def _page_points(pdf: bytes) -> tuple[float, float]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        width, height = doc[0].get_size()
        return float(width), float(height)
    finally:
        doc.close()


def _one_line(result: PrintResult) -> None:
    assert "\n" not in result.message and str(result.path) in result.message


def _saved(tmp_path: Path) -> Path:
    return tmp_path / "slips"


# --- good prints: the paper is the slip's own size, nothing scaled ---------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_good_print_comes_out_at_the_slips_own_size_on_a_label_default_queue(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path, fmt: str
) -> None:
    printer = cups_server.add_pdf_printer(options=(LABEL_DEFAULT,))
    data = make_slip(level="urgent")
    pdf = render_slip(data, fmt)
    result = print_pdf(pdf, printer.name, _saved(tmp_path), f"{data.code}-{fmt}.pdf")
    assert result.printed, result.message
    assert result.problem == "" and result.job.startswith(f"{printer.name}-")
    assert result.message == f"slip printed on {printer.name} (job {result.job})"
    (out,) = printer.outputs()
    printed = out.read_bytes()
    want_w, want_h = _page_points(pdf)
    got_w, got_h = _page_points(printed)
    assert abs(got_w - want_w) < 1.5 and abs(got_h - want_h) < 1.5, (got_w, got_h)
    # Nothing was scaled: the QR on the printed page is as wide as on the slip, and
    # decodes to the same signed address.
    (slip_page,) = rasterise(pdf)[:1]
    (printed_page,) = rasterise(printed)[:1]
    assert _decode(printed_page) == [data.url]
    assert abs(_qr_width(printed_page) - _qr_width(slip_page)) <= 2
    assert result.path.read_bytes() == pdf  # the kit's own copy


def test_without_the_paper_size_the_label_default_would_shrink_the_slip(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path
) -> None:
    # The control for the test above: plain `lp`, as the kit used to print.
    printer = cups_server.add_pdf_printer(options=(LABEL_DEFAULT,))
    path = tmp_path / "slip.pdf"
    pdf = render_slip(make_slip(), "receipt80")
    path.write_bytes(pdf)
    cups_server.run("lp", "-d", printer.name, str(path))
    cups_server.wait_until_done(printer.name)
    (out,) = printer.outputs()
    width, height = _page_points(out.read_bytes())
    assert abs(width - 58 * MM) < 1.5 and abs(height - 65 * MM) < 1.5
    shrunk = _qr_width(rasterise(out.read_bytes())[0]) / _qr_width(rasterise(pdf)[0])
    assert shrunk < 0.5


def test_a_multi_page_a6_day_summary_prints_every_page_at_a6(
    cups_server: PrivateCups, tmp_path: Path
) -> None:
    from tests.printouts.test_render import _summary

    printer = cups_server.add_pdf_printer(options=(LABEL_DEFAULT,))
    codes = [f"code {i}" for i in range(30)]
    pdf = render_day_summary(_summary(unsent=30, unsent_codes=codes), "a6")
    result = print_pdf(pdf, printer.name, _saved(tmp_path), "day.pdf", what="day summary")
    assert result.printed and result.message.startswith("day summary printed on")
    (out,) = printer.outputs()
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(out.read_bytes())
    sizes = [doc[i].get_size() for i in range(len(doc))]
    assert len(sizes) == len(pdfium.PdfDocument(pdf)) >= 2
    for width, height in sizes:
        assert abs(width - 105 * MM) < 1.5 and abs(height - 148 * MM) < 1.5


def test_media_option_is_the_pdfs_own_page_size_rounded_up(make_slip: MakeSlip) -> None:
    for fmt in ("receipt80", "receipt58"):
        pdf = render_slip(make_slip(), fmt)
        width, height = page_size_mm(pdf) or (0, 0)
        media = media_option(pdf)
        assert media is not None and media.startswith("Custom.") and media.endswith("mm")
        w, h = (float(v) for v in media[len("Custom.") : -2].split("x"))
        assert width <= w < width + 0.1 and height <= h < height + 0.1
        assert round(w) == FORMATS[fmt].width_mm
    assert media_option(render_slip(make_slip(), "a6")) == "iso_a6_105x148mm"
    assert media_option(b"not a pdf") is None


# --- the queue is checked before anything is sent --------------------------------------


def _nothing_sent(cups: PrivateCups, printer: PdfPrinter) -> None:
    """No job was ever made, and none comes out once the printer is back."""
    assert cups.jobs(printer.name, "all") == []
    cups.run("cupsenable", printer.name)
    cups.run("cupsaccept", printer.name)
    assert cups.jobs(printer.name, "all") == [] and printer.outputs() == []


def test_a_paused_printer_is_reported_with_how_to_resume_it_and_gets_no_job(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path
) -> None:
    printer = cups_server.add_pdf_printer()
    cups_server.run("cupsdisable", printer.name)
    pdf = render_slip(make_slip(), "receipt80")
    result = print_pdf(pdf, printer.name, _saved(tmp_path), "A-receipt80.pdf")
    assert not result.printed and result.problem == "paused" and result.job == ""
    assert result.message == (
        f"printer {printer.name} is paused: resume it with `cupsenable {printer.name}` or "
        f"from the printer's menu, then print again; slip saved to {result.path}"
    )
    assert result.path.read_bytes() == pdf
    _nothing_sent(cups_server, printer)


def test_a_paused_printer_with_a_reason_says_it(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path
) -> None:
    printer = cups_server.add_pdf_printer()
    cups_server.run("cupsdisable", "-r", "Out of paper", printer.name)
    result = print_pdf(render_slip(make_slip(), "a6"), printer.name, _saved(tmp_path), "B.pdf")
    assert result.problem == "paused"
    assert f"printer {printer.name} is paused (Out of paper): resume it" in result.message
    _one_line(result)
    _nothing_sent(cups_server, printer)


@pytest.mark.parametrize("reason", [None, "Being serviced"])
def test_a_printer_rejecting_jobs_is_reported_with_how_to_accept_them(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path, reason: str | None
) -> None:
    printer = cups_server.add_pdf_printer()
    cups_server.run("cupsreject", *(("-r", reason) if reason else ()), printer.name)
    result = print_pdf(render_slip(make_slip(), "receipt58"), printer.name, _saved(tmp_path), "C")
    assert not result.printed and result.problem == "rejecting"
    said = f" ({reason})" if reason else ""
    assert result.message.startswith(
        f"printer {printer.name} is not accepting jobs{said}: allow them with "
        f"`cupsaccept {printer.name}`"
    )
    _one_line(result)
    _nothing_sent(cups_server, printer)


def test_a_wrong_printer_name_lists_the_printers_cups_has(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path
) -> None:
    printer = cups_server.add_pdf_printer()
    result = print_pdf(render_slip(make_slip(), "receipt80"), "Thermal8", _saved(tmp_path), "D")
    assert not result.printed and result.problem == "no_such_printer"
    assert result.message.startswith("there is no printer Thermal8 in CUPS (CUPS has ")
    assert printer.name in result.message
    assert "set [printer] name in kit.toml to the name `lpstat -p` shows" in result.message
    _one_line(result)


def test_a_stopped_cupsd_is_reported_as_cups_not_running(
    make_slip: MakeSlip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cups: PrivateCups
) -> None:
    with private_cups() as own:
        printer = own.add_pdf_printer()
        monkeypatch.setenv("CUPS_SERVER", str(own.socket))
        assert print_pdf(render_slip(make_slip(), "a6"), printer.name, tmp_path, "E").printed
        own.stop()
        result = print_pdf(render_slip(make_slip(), "a6"), printer.name, tmp_path, "F.pdf")
    assert not result.printed and result.problem == "cups_down"
    assert result.message == (
        "CUPS is not running: start it with `sudo systemctl start cups`, then print again; "
        f"slip saved to {result.path}"
    )
    assert "does not exist" not in result.message


def test_a_job_cups_refuses_says_why(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path
) -> None:
    printer = cups_server.add_pdf_printer()
    cups_server.run("lpadmin", "-p", printer.name, "-u", "allow:nobody")
    result = print_pdf(render_slip(make_slip(), "a6"), printer.name, _saved(tmp_path), "L.pdf")
    assert not result.printed and result.problem == "send_failed" and result.job == ""
    assert result.message == (
        f"CUPS refused the slip for {printer.name} (Not allowed to print); "
        f"slip saved to {result.path}"
    )
    assert cups_server.jobs(printer.name, "all") == []


# --- after sending: a job that does not finish is cancelled, never reported printed ----


def test_a_held_job_is_not_printed_and_is_cancelled(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path
) -> None:
    printer = cups_server.add_pdf_printer(options=("job-hold-until-default=indefinite",))
    result = print_pdf(
        render_slip(make_slip(), "receipt80"), printer.name, _saved(tmp_path), "G.pdf", wait=1
    )
    assert not result.printed and result.problem == "not_finished"
    assert result.message.startswith(
        f"printer {printer.name} did not print the slip within 1 s (the job is held); the job "
        "was cancelled so it cannot come out later: check the printer's power, paper and cable"
    )
    _one_line(result)
    assert cups_server.jobs(printer.name) == []  # nothing left waiting
    assert cups_server.jobs(printer.name, "completed") == [result.job]
    release = cups_server.run("lp", "-i", result.job, "-H", "resume", check=False)
    assert release.returncode != 0  # a cancelled job cannot be released later
    assert printer.outputs() == []


@pytest.mark.slow
def test_a_printer_that_is_switched_off_is_not_printed_and_the_job_cancelled(
    cups_server: PrivateCups, make_slip: MakeSlip, tmp_path: Path
) -> None:
    name = cups_server.add_unreachable_printer()
    result = print_pdf(
        render_slip(make_slip(), "receipt58"), name, _saved(tmp_path), "H.pdf", wait=1.5
    )
    assert not result.printed and result.problem == "not_finished"
    assert f"printer {name} did not print the slip within 1.5 s" in result.message
    assert "the job was cancelled so it cannot come out later" in result.message
    _one_line(result)
    assert cups_server.jobs(name) == []


def test_a_job_cups_cannot_print_is_reported_with_its_error_and_cancelled(
    cups_server: PrivateCups, tmp_path: Path
) -> None:
    printer = cups_server.add_pdf_printer()
    broken = b"%PDF-1.4\nnot really a PDF\n"
    result = print_pdf(broken, printer.name, _saved(tmp_path), "I.pdf", wait=60)
    assert not result.printed and result.problem == "job_failed"
    assert result.message.startswith(f"printer {printer.name} could not print the slip (")
    assert "the job was cancelled" in result.message
    _one_line(result)
    assert cups_server.jobs(printer.name) == []


@pytest.mark.slow
def test_cups_stopping_while_the_job_waits_is_not_reported_as_printed(
    make_slip: MakeSlip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cups: PrivateCups
) -> None:
    with private_cups() as own:
        printer = own.add_pdf_printer(options=("job-hold-until-default=indefinite",))
        monkeypatch.setenv("CUPS_SERVER", str(own.socket))

        def stop_once_queued() -> None:
            deadline = time.monotonic() + 60
            while not own.jobs(printer.name) and time.monotonic() < deadline:
                time.sleep(0.05)  # no event to await: CUPS queues the job in lp's time
            own.stop()

        stopper = threading.Thread(target=stop_once_queued)
        stopper.start()
        pdf = render_slip(make_slip(), "receipt80")
        result = print_pdf(pdf, printer.name, tmp_path, "J.pdf", wait=120)
        stopper.join()
    assert not result.printed and result.problem == "unknown" and result.job
    assert f"CUPS stopped answering after job {result.job} was sent" in result.message
    assert f"`cancel {result.job}`" in result.message
    _one_line(result)


@pytest.fixture
def silent_cups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A CUPS socket that takes connections and never answers (a hung scheduler)."""
    path = Path("/tmp") / f"popup-kit-hung-{tmp_path.name}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("CUPS_SERVER", str(path))
    yield path
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()
    path.unlink(missing_ok=True)


def test_a_cups_that_does_not_answer_times_out_and_keeps_the_pdf(
    silent_cups: Path, make_slip: MakeSlip, tmp_path: Path
) -> None:
    pdf = render_slip(make_slip(), "receipt80")
    result = print_pdf(pdf, "Thermal80", _saved(tmp_path), "K.pdf", timeout=2)
    assert not result.printed and result.problem == "cups_timeout"
    assert result.message.startswith("CUPS did not answer within 2 s: restart it with")
    _one_line(result)
    assert result.path.read_bytes() == pdf


# --- no printer, no CUPS commands, no disk ---------------------------------------------

PDF = b"%PDF-1.3\n% test\n"


def test_no_printer_set(tmp_path: Path) -> None:
    result = print_pdf(PDF, "  ", tmp_path, "A.pdf")
    assert not result.printed and result.problem == "no_printer"
    assert (
        result.message
        == f"no printer set: set [printer] name in kit.toml; slip saved to {result.path}"
    )
    assert result.path.read_bytes() == PDF


def test_cups_commands_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = print_pdf(PDF, "Thermal", tmp_path, "B.pdf", what="consent copy")
    assert not result.printed and result.problem == "no_cups"
    assert "`sudo apt-get install cups-client`; consent copy saved to" in result.message
    assert result.path.exists()


def test_file_names() -> None:
    assert slip_filename("K7M3Q-X9P2C-AW4T7", "receipt58") == "K7M3Q-X9P2C-AW4T7-receipt58.pdf"
    assert slip_filename("K7M3Q-X9P2C-AW4T7", "a6", "consent") == "K7M3Q-X9P2C-AW4T7-consent-a6.pdf"


def test_unwritable_slips_folder_falls_back_to_the_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    not_a_folder = tmp_path / "slips"
    not_a_folder.write_text("a file where the folder should be")
    result = print_pdf(PDF, "", not_a_folder, "Z.pdf")
    assert not result.printed and result.path == tmp_path / "tmp" / "Z.pdf"
    assert result.path.read_bytes() == PDF
    assert f"could not save in {not_a_folder}" in result.message
    assert str(result.path) in result.message and "\n" not in result.message


def test_nowhere_to_save_is_said_and_nothing_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where folders should be")
    monkeypatch.setattr(tempfile, "tempdir", str(blocked / "tmp"))
    result = print_pdf(PDF, "Thermal", blocked / "slips", "Z.pdf", what="day summary")
    assert not result.printed and result.problem == "unsaved"
    assert result.message.startswith(f"could not save the day summary in {blocked / 'slips'}")
    assert "free some disk space" in result.message and "\n" not in result.message

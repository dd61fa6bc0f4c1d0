from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import ImageDraw

from popup_kit.cli import main
from popup_kit.vault import kit_key
from printouts.codes import new_referral_code
from printouts.payload import slip_url
from printouts.render import SlipData, render_slip
from printouts.scan import decode_qr_texts
from tests.printouts.conftest import pdf_text, rasterise
from tests.support.cups import PrivateCups


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("POPUP_KIT_DATA_DIR", str(path))
    monkeypatch.delenv("POPUP_KIT_CONFIG", raising=False)
    return path


def _kit_slip_png(data_dir: Path, tmp_path: Path, secret: bytes | None = None) -> tuple[Path, str]:
    from popup_kit.config import load_config

    config = load_config()
    key = kit_key(config)
    code = new_referral_code()
    data = SlipData(
        code=code,
        url=slip_url(config.server_base_url, code, secret or key.secret),
        level="routine",
        language="en",
        booth_name=config.booth_name,
        event=config.event,
        visit_date=dt.date(2026, 11, 22),
    )
    path = tmp_path / f"{code}.png"
    rasterise(render_slip(data, "receipt80"))[0].save(path)
    return path, code


def test_scan_genuine_slip(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    image, code = _kit_slip_png(data_dir, tmp_path)
    assert main(["scan", str(image), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["code"] == code and out["signature"] == "valid"


def test_scan_forged_slip(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    image, _ = _kit_slip_png(data_dir, tmp_path, secret=b"not this kit" * 3)
    assert main(["scan", str(image)]) == 7
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not match this kit's key" in err


def test_scan_damaged_and_foreign(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    import qrcode

    image, _ = _kit_slip_png(data_dir, tmp_path)
    from PIL import Image

    with Image.open(image) as opened:
        img = opened.convert("L")
    assert decode_qr_texts(img)
    w, h = img.size
    ImageDraw.Draw(img).rectangle((0, int(h * 0.3), w, int(h * 0.55)), fill=0)
    damaged = tmp_path / "damaged.png"
    img.save(damaged)
    assert main(["scan", str(damaged)]) == 4
    assert "no QR code could be read" in capsys.readouterr().err

    foreign = tmp_path / "foreign.png"
    qrcode.make("https://example.com/menu").save(foreign)
    assert main(["scan", str(foreign), "--json"]) == 5
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"] == "foreign"
    assert "not a referral slip" in captured.err


def test_scan_missing_file(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["scan", str(tmp_path / "nope.png")]) == 2
    assert "no such image" in capsys.readouterr().err


# --- slip, print and scan with visits in the real store --------------------------------

EMERGENCY = {"age_years": 62, "ces_bladder_change": "new_or_worsening"}


def record(language: str = "en", **answers: Any) -> Any:
    """A visit saved through the kit's own service, as the UI or `visit add` would."""
    from popup_kit.config import load_config
    from popup_kit.services import VisitService
    from tests.forms.answers import BENIGN
    from tests.kit.conftest import CONSENT_MIN, visit_input

    base = EMERGENCY if answers.pop("emergency", False) else BENIGN
    service = VisitService(load_config())
    try:
        return service.record_visit(
            visit_input(
                answers={**base, **answers}, language=language, consent={**CONSENT_MIN, "c2": True}
            )
        )
    finally:
        service.close()


@pytest.mark.parametrize("fmt", ["receipt80", "receipt58", "a6"])
def test_slip_command_writes_a_verifiable_slip(
    data_dir: Path, tmp_path: Path, fmt: str, capsys: Any
) -> None:
    visit = record(fever_or_rigors=True)
    out = tmp_path / "slip.pdf"
    typed = visit.code.lower().replace("-", "")
    assert main(["slip", typed, "--out", str(out), "--format", fmt, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "slip"
    pdf = out.read_bytes()
    (url,) = [t for page in rasterise(pdf) for t in decode_qr_texts(page)]
    assert visit.code.replace("-", "") in url
    text = " ".join(pdf_text(pdf).split())
    assert visit.code in text and "Urgent" in text
    png = tmp_path / "slip.png"
    rasterise(pdf)[0].save(png)
    assert main(["scan", str(png), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["in_store"] and found["code"] == visit.code
    assert found["visit"]["triage"] == "urgent" and found["visit"]["rules"] == ["UR7"]


def test_emergency_visit_gets_emergency_slip(data_dir: Path, tmp_path: Path) -> None:
    visit = record(emergency=True)
    out = tmp_path / "e.pdf"
    assert main(["slip", visit.code, "--out", str(out)]) == 0
    text = " ".join(pdf_text(out.read_bytes()).split())
    assert text.startswith("Go to the Emergency Department now")
    assert "cauda equina syndrome" in text and "EM1" in text


def test_consent_copy(data_dir: Path, tmp_path: Path) -> None:
    visit = record(language="es")
    out = tmp_path / "c.pdf"
    assert main(["slip", visit.code, "--consent-copy", "--out", str(out)]) == 0
    text = " ".join(pdf_text(out.read_bytes()).split())
    assert visit.code in text


def test_slip_unknown_code_and_bad_code(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["slip", new_referral_code(), "--out", str(tmp_path / "x.pdf")]) == 1
    assert "no visit with code" in capsys.readouterr().err
    assert main(["slip", "ABCDE", "--out", str(tmp_path / "x.pdf")]) == 2
    assert "wrong length" in capsys.readouterr().err


def test_print_without_printer_saves_pdf(data_dir: Path, capsys: Any) -> None:
    visit = record(osteoporosis=True)
    assert main(["print", visit.code]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"popup-kit: no printer set: set [printer] name in kit.toml; slip saved to "
        f"{data_dir / 'slips' / f'{visit.code}-receipt80.pdf'}\n"
    )
    saved = Path(captured.out.strip())
    assert saved == data_dir / "slips" / f"{visit.code}-receipt80.pdf"
    assert visit.code in pdf_text(saved.read_bytes())


def _kit_toml(tmp_path: Path, printer: str, fmt: str = "receipt80", extra: str = "") -> Path:
    config = tmp_path / "kit.toml"
    config.write_text(f'[printer]\nname = "{printer}"\nslip_format = "{fmt}"\n{extra}')
    return config


def test_print_sends_to_the_configured_printer_in_the_visits_language(
    data_dir: Path, tmp_path: Path, cups_server: PrivateCups, capsys: Any
) -> None:
    printer = cups_server.add_pdf_printer(options=("PageSize=Custom.58x65mm",))
    config = _kit_toml(
        tmp_path,
        printer.name,
        "receipt58",
        '[booth]\nname = { en = "Back pain booth", es = "Puesto de dolor de espalda" }\n',
    )
    visit = record(language="es", fever_or_rigors=True)
    assert main(["print", visit.code, "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["printed"] and out["problem"] == "" and out["job"].startswith(printer.name)
    assert Path(out["path"]).name == f"{visit.code}-receipt58.pdf"
    sent = " ".join(pdf_text(Path(out["path"]).read_bytes()).split())
    assert "Su código de derivación" in sent and "Puesto de dolor de espalda" in sent
    # What came out of CUPS: cups-pdf redraws it through Ghostscript, whose text layer
    # keeps ASCII only; the page itself is measured and scanned.
    (printed,) = printer.outputs()
    pdf = printed.read_bytes()
    text = " ".join(pdf_text(pdf).split())
    assert "Escanee el cuadrado" in text and "Puesto de dolor de espalda" in text
    (page,) = rasterise(pdf)
    assert abs(page.width / 203 * 25.4 - 58) < 0.5
    (url,) = decode_qr_texts(page)
    assert visit.code.replace("-", "") in url


def test_print_on_a_paused_printer_exits_1_with_the_reason_and_the_saved_pdf(
    data_dir: Path, tmp_path: Path, cups_server: PrivateCups, capsys: Any
) -> None:
    printer = cups_server.add_pdf_printer()
    cups_server.run("cupsdisable", printer.name)
    visit = record()
    assert main(["print", visit.code, "--config", str(_kit_toml(tmp_path, printer.name))]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"popup-kit: printer {printer.name} is paused: resume it")
    saved = Path(captured.out.strip())
    assert saved.name == f"{visit.code}-receipt80.pdf" and saved.exists()
    assert cups_server.jobs(printer.name, "all") == []


def test_printing_a_voided_visit_prints_the_void_mark(
    data_dir: Path, tmp_path: Path, cups_server: PrivateCups, capsys: Any
) -> None:
    from popup_kit.config import load_config
    from popup_kit.services import VisitService

    printer = cups_server.add_pdf_printer()
    visit = record()
    service = VisitService(load_config())
    try:
        service.void_visit(visit.visit_id, "Recorded twice", "AB")
    finally:
        service.close()
    config = _kit_toml(tmp_path, printer.name, "a6")
    assert main(["print", visit.code, "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["void"] and out["message"].startswith(f"VOID slip printed on {printer.name}")
    (printed,) = printer.outputs()
    text = " ".join(pdf_text(printed.read_bytes()).split())
    assert text.startswith("VOID") and "Reason: Recorded twice" in text
    assert not [t for page in rasterise(printed.read_bytes()) for t in decode_qr_texts(page)]
    out_pdf = tmp_path / "void.pdf"
    assert main(["slip", visit.code, "--out", str(out_pdf), "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"VOID slip for {visit.code} (a6) written to")
    assert " ".join(pdf_text(out_pdf.read_bytes()).split()).startswith("VOID")


def test_summary_print_says_what_it_printed(
    data_dir: Path, tmp_path: Path, cups_server: PrivateCups, capsys: Any
) -> None:
    printer = cups_server.add_pdf_printer()
    record()
    config = _kit_toml(tmp_path, printer.name)
    assert main(["summary", "--print", "--config", str(config)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("day summary for 20") and f" printed on {printer.name} (job " in out
    assert "slip" not in out.split(" printed on ")[0]
    (printed,) = printer.outputs()
    assert "Day summary" in pdf_text(printed.read_bytes())

    cups_server.run("cupsreject", printer.name)
    assert main(["summary", "--print", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not accepting jobs" in err
    assert "; day summary for 20" in err and " saved to " in err and "slip saved" not in err


def test_day_summary(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    record()
    record(emergency=True)
    out = tmp_path / "day.pdf"
    assert main(["summary", "--out", str(out)]) == 0
    text = " ".join(pdf_text(out.read_bytes()).split())
    assert "Day summary" in text or "summary" in text.lower()

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import ImageDraw

from popup_kit.cli import main
from printouts.codes import new_referral_code
from printouts.payload import load_or_create_kit_key, slip_url
from printouts.render import SlipData, render_slip
from printouts.scan import decode_qr_texts
from tests.printouts.conftest import pdf_text, rasterise


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("POPUP_KIT_DATA_DIR", str(path))
    monkeypatch.delenv("POPUP_KIT_CONFIG", raising=False)
    return path


def _kit_slip_png(data_dir: Path, tmp_path: Path, secret: bytes | None = None) -> tuple[Path, str]:
    from popup_kit.config import load_config

    config = load_config()
    key = load_or_create_kit_key(config.data_dir, config.kit_id)
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
    assert captured.err.count("\n") == 1 and "no printer set" in captured.err
    saved = Path(captured.out.strip())
    assert saved == data_dir / "slips" / f"{visit.code}-receipt80.pdf"
    assert visit.code in pdf_text(saved.read_bytes())


def test_print_sends_to_configured_printer(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from tests.printouts.test_printing import _fake_lp

    log = tmp_path / "lp-args"
    _fake_lp(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "kit.toml"
    config.write_text('[printer]\nname = "Thermal"\nslip_format = "receipt58"\n')
    visit = record(language="es", fever_or_rigors=True)
    assert main(["print", visit.code, "--config", str(config)]) == 0
    args = log.read_text().split()
    assert args[:2] == ["-d", "Thermal"]
    printed = Path(args[-1])
    assert printed.name == f"{visit.code}-receipt58.pdf"
    assert "Su código de derivación" in " ".join(pdf_text(printed.read_bytes()).split())


def test_day_summary(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    record()
    record(emergency=True)
    out = tmp_path / "day.pdf"
    assert main(["summary", "--out", str(out)]) == 0
    text = " ".join(pdf_text(out.read_bytes()).split())
    assert "Day summary" in text or "summary" in text.lower()

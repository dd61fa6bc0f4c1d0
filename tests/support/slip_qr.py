"""The URL a phone's camera reads from a printed slip: its PDF rasterised, the one QR
code decoded."""

from __future__ import annotations

from tests.printouts.conftest import rasterise


def qr_url(pdf: bytes) -> str:
    from pyzbar.pyzbar import ZBarSymbol, decode

    found = [d for page in rasterise(pdf) for d in decode(page, [ZBarSymbol.QRCODE])]
    assert len(found) == 1, f"{len(found)} QR codes on the slip"
    return str(found[0].data.decode("utf-8"))

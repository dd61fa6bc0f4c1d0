"""QR encoding shared by the printouts and the on-screen fallback.

Error correction M (15 %) survives a smudged thermal print while keeping the symbol
small; the quiet zone is the standard four modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

QUIET_ZONE = 4


@dataclass(frozen=True)
class QrMatrix:
    """Modules of a QR symbol including its quiet zone; ``True`` is dark."""

    version: int
    rows: tuple[tuple[bool, ...], ...]

    @property
    def size(self) -> int:
        return len(self.rows)


@lru_cache(maxsize=64)
def qr_matrix(text: str) -> QrMatrix:
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE, box_size=1)
    qr.add_data(text)
    qr.make(fit=True)
    rows = tuple(tuple(bool(m) for m in row) for row in qr.get_matrix())
    return QrMatrix(version=int(qr.version), rows=rows)


def qr_text_art(text: str, *, dark_on_light: bool = True) -> str:
    """The QR drawn with half-block characters, two module rows per text line.

    With ``dark_on_light`` the light modules are drawn as blocks, so on a terminal with
    light text on a dark background the code appears dark on light, as phones expect.
    """
    matrix = qr_matrix(text)
    rows = list(matrix.rows)
    if len(rows) % 2:
        rows.append(tuple(False for _ in rows[0]))
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        chars = []
        for t, b in zip(top, bottom, strict=True):
            inked_t = (not t) if dark_on_light else t
            inked_b = (not b) if dark_on_light else b
            chars.append(
                "█" if inked_t and inked_b else "▀" if inked_t else "▄" if inked_b else " "
            )
        lines.append("".join(chars))
    return "\n".join(lines)

"""Printouts as PDF bytes: referral slip, emergency slip, consent copy, day summary.

Receipts are one long page whose height fits the content; A6 is a fixed page whose type
shrinks to keep one page (and continues on a second page only as a last resort). Text
uses the embedded DejaVu Sans (Latin, Greek, Cyrillic). The QR is drawn as vector
squares whose size and position are whole printer dots at 203 dpi, so a thermal print
has no half-dots blurring the modules. Every printout ends with the cauda equina card.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forms.texts import ces_warning, outcome_text
from printouts.codes import CodeError, compact_code, normalize_code
from printouts.qr import QrMatrix, qr_matrix
from printouts.texts import (
    SUMMARY_LEVELS,
    consent_wording,
    item_name,
    label,
    level_name,
)

MM = 72 / 25.4
DOT = 72 / 203  # one thermal printer dot, in points
FONT_DIR = Path(__file__).parent / "fonts"
REGULAR = "DejaVuSans"
BOLD = "DejaVuSans-Bold"
TOP_MARGIN_MM = 4.0
TEAR_MM = 10.0  # blank paper below a receipt, to tear it off
PAGE_BOTTOM_MM = 6.0
MIN_SIZE = 6.5
MARKED_MIN_SIZE = 5.5  # a void or replaced printout is a record: it may shrink further
MAX_UNSENT_CODES = 20
LEADING = 1.22
ADVICE_ONLY = ("ineligible", "consent_refused")  # tallies: nothing about the person is kept


@dataclass(frozen=True)
class PageFormat:
    name: str
    width_mm: float
    printable_mm: float
    height_mm: float | None  # None: receipt roll, the page is as long as the content
    base_size: float  # body type size in points
    qr_mm: float  # the QR with its quiet zone is at most this wide


FORMATS: dict[str, PageFormat] = {
    "receipt80": PageFormat("receipt80", 80, 72, None, 9, 44),
    "receipt58": PageFormat("receipt58", 58, 48, None, 8, 40),
    "a6": PageFormat("a6", 105, 89, 148, 9, 34),
}


@dataclass(frozen=True)
class SlipData:
    """What a referral slip, emergency slip or consent copy shows.

    No names, no contact details, no answers: only the code, the outcome level and the
    plain-words reasons. ``code`` and ``url`` may be empty (a visit that gets advice
    only): the slip then has no code and no QR.
    """

    code: str  # any accepted spelling; printed in canonical dashed form
    url: str  # what the QR carries: printouts.payload.slip_url(...)
    level: str  # emergency | urgent | routine | self_care | ineligible | consent_refused
    language: str
    booth_name: str
    event: str
    visit_date: dt.date  # a datetime is shown as its local date
    reasons: Sequence[str] = ()  # fired rules' reasons in plain words, in ``language``
    rule_ids: Sequence[str] = ()  # fired rule ids, for the emergency department
    emergency_number: str = ""
    consent: Mapping[str, bool] | None = None  # item id (c1..c5) -> granted
    consent_context: Mapping[str, str] = field(default_factory=dict)  # provider, controller
    ruleset_version: str = ""
    consent_version: str = ""
    # A voided visit: the printout carries a VOID mark with this reason and no QR.
    void_reason: str | None = None
    # An old version of a corrected visit: marked as replaced by this version, no QR.
    superseded_by: int | None = None
    # The QR points at the shipped placeholder server: say that it leads nowhere yet.
    server_placeholder: bool = False

    @property
    def marked(self) -> bool:
        """Void or superseded: a record of what was printed, not something to act on."""
        return self.void_reason is not None or self.superseded_by is not None


@dataclass(frozen=True)
class DaySummaryData:
    """The booth's day for the coordinator: counts only, no codes of people's answers."""

    booth_name: str
    event: str
    day: dt.date
    counts_by_outcome: Mapping[str, int]  # level -> visits (ineligible, consent_refused too)
    consent_granted: Mapping[str, int]  # item id (c1..c5) -> visits that granted it
    visits: int
    unsent: int
    oldest_unsent: dt.datetime | None = None  # shown in local time
    kit_id: str = ""
    language: str = "en"
    consent_asked: int | None = None  # visits that were asked for consent (default: visits)
    set_aside: int = 0
    unsent_codes: Sequence[str] = ()
    emergency_number: str = ""
    server_placeholder: bool = False  # the kit's slips point at the placeholder server


@dataclass(frozen=True)
class ReconciliationData:
    """Where every record of the period is, for the coordinator (no codes of answers)."""

    booth_name: str
    event: str
    day: dt.date | None  # None: every day in the store
    kit_id: str
    visits: int
    records: int
    sent: int
    confirmed: int
    conflicts: Sequence[tuple[str, str]] = ()  # (referral code, reason)
    set_aside: Sequence[tuple[str, str]] = ()
    purged_visits: int = 0
    only_here: int = 0
    only_here_codes: Sequence[str] = ()
    last_error: str = ""
    withdrawn_visits: int = 0
    withdrawn_on_slip_page: Sequence[str] = ()  # codes withdrawn by the attendee online


class RenderError(ValueError):
    """The data cannot make this printout; the message says why."""


_fonts_registered = False


def _register_fonts() -> None:
    global _fonts_registered
    if _fonts_registered:
        return
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont(REGULAR, str(FONT_DIR / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(BOLD, str(FONT_DIR / "DejaVuSans-Bold.ttf")))
    _fonts_registered = True


def warm_up() -> None:
    """Import reportlab and qrcode and load the fonts, so the first slip prints at once.

    For a background worker after the UI has drawn; rendering does this itself anyway.
    """
    _register_fonts()
    qr_matrix("https://warm.up/r/0")


def _width(text: str, font: str, size: float) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return float(stringWidth(text, font, size))


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        current = ""
        for word in para.split():
            candidate = f"{current} {word}" if current else word
            if _width(candidate, font, size) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            # A word wider than the column (a long address) is broken where it overflows.
            while _width(word, font, size) > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and _width(word[:cut], font, size) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        lines.append(current)
    return lines


Draw = Callable[[Any, float, float], None]  # (canvas, x_left, y_top)
Overlay = Callable[[Any, float, float, float, float], None]  # (canvas, x, y, width, height)


@dataclass
class _Block:
    height: float
    draw: Draw
    keep_with_next: bool = False  # a rule or heading never ends a page


class _Flow:
    """Blocks stacked top to bottom in a column ``width`` points wide."""

    def __init__(self, fmt: PageFormat, size: float, width: float | None = None) -> None:
        self.fmt = fmt
        self.width = fmt.printable_mm * MM if width is None else width
        self.size = size
        self.blocks: list[_Block] = []
        self.page_h = 0.0  # set when drawn; the QR snaps to the dot grid from the top

    @property
    def height(self) -> float:
        return sum(b.height for b in self.blocks)

    def fits(self) -> bool:
        if self.fmt.height_mm is None:
            return True
        return self.height <= (self.fmt.height_mm - TOP_MARGIN_MM - PAGE_BOTTOM_MM) * MM

    def text(
        self,
        text: str,
        *,
        size: float | None = None,
        bold: bool = False,
        align: str = "left",
        bullet: str = "",
        inverse: bool = False,
        after: float = 0.3,
        keep: bool = False,
    ) -> None:
        """A paragraph; ``inverse`` is white on a black band; ``after`` is space in ems;
        ``keep`` keeps it on the same page as the next block (a heading)."""
        size = size or self.size
        font = BOLD if bold else REGULAR
        pad = 1.6 * MM if inverse else 0.0
        bullet_w = _width(bullet + " ", font, size) if bullet else 0.0
        lines = _wrap(text, font, size, self.width - 2 * pad - bullet_w)
        leading = size * LEADING
        body = leading * len(lines) + 2 * pad
        width = self.width

        def draw(c: Any, x: float, y: float) -> None:
            if inverse:
                c.setFillGray(0)
                c.rect(x, y - body, width, body, stroke=0, fill=1)
                c.setFillGray(1)
            c.setFont(font, size)
            left = x + pad
            for i, line in enumerate(lines):
                base = y - pad - size * 0.93 - i * leading
                if bullet and i == 0:
                    c.drawString(left, base, bullet)
                if align == "center":
                    c.drawCentredString(x + width / 2, base, line)
                else:
                    c.drawString(left + bullet_w, base, line)
            c.setFillGray(0)

        self.blocks.append(_Block(body + after * size, draw, keep))

    def fit_text(
        self, text: str, *, max_size: float, min_size: float = 0.0, bold: bool = True
    ) -> None:
        """One centred line, as large as fits the column up to ``max_size`` (the code).

        Below ``min_size`` the text wraps instead of shrinking further.
        """
        font = BOLD if bold else REGULAR
        size = min(max_size, 0.97 * self.width / max(_width(text, font, 1.0), 1e-6))
        self.text(text, size=max(size, min_size), bold=bold, align="center", after=0.15)

    def fit_text_band(self, text: str, *, max_size: float) -> None:
        """One centred line, white on a black band, as large as fits (VOID)."""
        pad = 1.6 * MM
        size = min(max_size, 0.92 * (self.width - 2 * pad) / max(_width(text, BOLD, 1.0), 1e-6))
        self.text(text, size=size, bold=True, align="center", inverse=True, after=0.2)

    def gap(self, mm: float) -> None:
        self.blocks.append(_Block(mm * MM, lambda c, x, y: None))

    def rule(self) -> None:
        width = self.width

        def draw(c: Any, x: float, y: float) -> None:
            c.setLineWidth(0.8)
            c.line(x, y - 1.6 * MM, x + width, y - 1.6 * MM)

        self.blocks.append(_Block(3.2 * MM, draw, keep_with_next=True))

    def framed(self, fill: Callable[[_Flow], None]) -> None:
        """Blocks built by ``fill`` inside a ruled box (the part for hospital staff)."""
        pad = 1.8 * MM
        line = 1.0
        inner = _Flow(self.fmt, self.size, self.width - 2 * pad)
        fill(inner)
        height = inner.height + 2 * pad
        width = self.width

        def draw(c: Any, x: float, y: float) -> None:
            c.setLineWidth(line)
            c.rect(x + line / 2, y - height + line / 2, width - line, height - line)
            inner.page_h = self.page_h
            top = y - pad
            for block in inner.blocks:
                block.draw(c, x + pad, top)
                top -= block.height

        self.blocks.append(_Block(height + 0.4 * self.size, draw))

    def _qr_size(self, url: str) -> tuple[QrMatrix, float]:
        """The matrix and its module size: the most whole dots that fit ``qr_mm``."""
        matrix = qr_matrix(url)
        room = min(self.fmt.qr_mm * MM, self.width)
        return matrix, max(1, int(room / DOT / matrix.size)) * DOT

    def qr(self, url: str) -> None:
        matrix, module = self._qr_size(url)
        n = matrix.size  # modules including the quiet zone
        side = module * n
        width = self.width

        def draw(c: Any, x: float, y: float) -> None:
            # Whole printer dots from the page's top-left corner, as the printer rasterises.
            left = round((x + (width - side) / 2) / DOT) * DOT
            top = self.page_h - round((self.page_h - y) / DOT) * DOT
            c.setFillGray(0)
            path = c.beginPath()
            for r, row in enumerate(matrix.rows):
                col = 0
                while col < n:
                    if not row[col]:
                        col += 1
                        continue
                    start = col
                    while col < n and row[col]:
                        col += 1
                    path.rect(
                        left + start * module,
                        top - (r + 1) * module,
                        (col - start) * module,
                        module,
                    )
            c.drawPath(path, stroke=0, fill=1)

        self.blocks.append(_Block(side + DOT, draw))

    def qr_beside(self, url: str, fill: Callable[[_Flow], None]) -> bool:
        """The QR on the left and ``fill``'s blocks beside it, if the column is wide enough.

        Returns False (and adds nothing) when the text column would be under 45 mm.
        """
        matrix, module = self._qr_size(url)
        side = module * matrix.size
        text_width = self.width - side - 1.5 * MM
        if text_width < 45 * MM:
            return False
        column = _Flow(self.fmt, self.size, text_width)
        fill(column)
        square = _Flow(self.fmt, self.size, side)
        square.qr(url)
        height = max(square.height, column.height)

        def draw(c: Any, x: float, y: float) -> None:
            square.page_h = column.page_h = self.page_h
            square.blocks[0].draw(c, x, y)
            top = y - (height - column.height) / 2
            for block in column.blocks:
                block.draw(c, x + self.width - text_width, top)
                top -= block.height

        self.blocks.append(_Block(height + 0.3 * self.size, draw))
        return True

    def render(self, title: str, overlay: Overlay | None = None) -> bytes:
        """The PDF; ``overlay(canvas, x, y, width, height)`` draws over every page's
        printable area."""
        from reportlab.pdfgen import canvas

        fmt = self.fmt
        # Page sizes are whole printer dots (within 0.1 mm of the nominal size), so a
        # 203 dpi rasteriser maps the QR's dot grid onto its pixels without resampling.
        page_w = _whole_dots(round(fmt.width_mm * MM / DOT))
        margin_x = (page_w - fmt.printable_mm * MM) / 2
        top_margin = TOP_MARGIN_MM * MM
        if fmt.height_mm is None:
            bottom_margin = TEAR_MM * MM
            page_h = _whole_dots(math.ceil((self.height + top_margin + bottom_margin) / DOT))
        else:
            bottom_margin = PAGE_BOTTOM_MM * MM
            page_h = _whole_dots(round(fmt.height_mm * MM / DOT))
        self.page_h = page_h
        buf = io.BytesIO()
        c = canvas.Canvas(buf, pagesize=(page_w, page_h), invariant=1, pageCompression=0)
        c.setTitle(title)
        c.setAuthor("popup-kit")
        y = y_top = page_h - top_margin
        for i, block in enumerate(self.blocks):
            needed = block.height
            for follower, prev in zip(self.blocks[i + 1 :], self.blocks[i:], strict=False):
                if not prev.keep_with_next:
                    break
                needed += follower.height
            fixed_page = fmt.height_mm is not None
            page_started = y < page_h - top_margin  # never leave a page empty
            if fixed_page and page_started and y - needed < bottom_margin:
                if overlay is not None:
                    overlay(
                        c, margin_x, bottom_margin, fmt.printable_mm * MM, y_top - bottom_margin
                    )
                c.showPage()
                y = page_h - top_margin
            block.draw(c, margin_x, y)
            y -= block.height
        if overlay is not None:
            overlay(c, margin_x, bottom_margin, fmt.printable_mm * MM, y_top - bottom_margin)
        c.save()
        return buf.getvalue()


def _whole_dots(dots: int) -> float:
    # A hair under the exact size: rasterisers round the page up to whole pixels
    # (ceil of a float32), and one pixel too many would rescale the whole page.
    return dots * DOT - 0.001


def _page_format(fmt: str) -> PageFormat:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise RenderError(f"unknown slip format {fmt!r}: use one of {', '.join(FORMATS)}") from None


def _produce(
    fmt: str,
    title: str,
    build: Callable[[_Flow], None],
    *,
    one_page: bool = True,
    overlay: Overlay | None = None,
    min_size: float = MIN_SIZE,
) -> bytes:
    """Lay out at the format's type size. On a fixed page a ``one_page`` printout (a slip
    handed over) shrinks its type to stay on one page, down to ``min_size``; a report
    continues on more pages."""
    page = _page_format(fmt)
    _register_fonts()
    size = page.base_size
    while True:
        flow = _Flow(page, size)
        build(flow)
        if not one_page or flow.fits() or size <= min_size:
            return flow.render(title, overlay)
        size -= 0.5


def _local_date(day: dt.date) -> dt.date:
    if isinstance(day, dt.datetime):
        return (day.astimezone() if day.tzinfo else day).date()
    return day


def _checked_code(data: SlipData) -> str:
    """The canonical code; refuses a code whose check fails or that the URL contradicts."""
    if not data.code:
        return ""
    try:
        code = normalize_code(data.code)
    except CodeError as exc:
        raise RenderError(f"cannot print referral code {data.code!r}: {exc}") from exc
    marker = data.url.rfind("/r/")
    if marker >= 0:
        in_url = data.url[marker + 3 :].split("?", 1)[0]
        try:
            matches = compact_code(in_url) == compact_code(code)
        except CodeError:
            matches = False
        if not matches:
            raise RenderError(f"the QR URL {data.url!r} is not for code {code}")
    return code


def _texts(level: str, language: str, number: str) -> tuple[str, str, list[str]]:
    try:
        return outcome_text(level, language, emergency_number=number)
    except KeyError:
        known = ", ".join(SUMMARY_LEVELS)
        raise RenderError(f"no advice for outcome level {level!r}: use one of {known}") from None


def _header(flow: _Flow, booth: str, event: str, day: dt.date, language: str) -> None:
    if booth:
        flow.text(booth, bold=True, align="center", after=0.1)
    if event:
        flow.text(event, align="center", size=flow.size - 1, after=0.1)
    flow.text(
        f"{label('date', language)}: {_local_date(day).isoformat()}",
        align="center",
        size=flow.size - 1,
        after=0,
    )
    flow.rule()


def _ces_card(flow: _Flow, language: str, emergency_number: str) -> None:
    """The cauda equina warning card: on every printout, always last."""
    heading, signs = ces_warning(language)
    flow.rule()
    flow.text(label("ces_title", language), bold=True, size=flow.size - 0.5, after=0.2, keep=True)
    flow.text(heading, bold=True, size=flow.size + 1, inverse=True, after=0.4, keep=True)
    for sign in signs:
        flow.text(sign, bullet="•", after=0.15)
    if emergency_number.strip():
        flow.gap(0.8)
        flow.fit_text(
            f"{label('emergency_number', language)}: {emergency_number.strip()}",
            max_size=flow.size + 2,
            min_size=flow.size,
        )


def _address(flow: _Flow, url: str, size: float) -> str:
    """The URL as a person types it: no scheme; where too wide, broken after ``/r/`` and
    before ``?s=`` rather than inside the code or the signature."""
    address = url.split("://", 1)[-1]
    lines: list[str] = []
    for piece in re.split(r"(?<=/r/)|(?=\?)", address):
        if lines and _width(lines[-1] + piece, REGULAR, size) <= flow.width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return "\n".join(lines)


def _mark(flow: _Flow, data: SlipData) -> None:
    """VOID or REPLACED in a black band as wide as the paper, and why, in plain words."""
    lang = data.language
    if data.void_reason is not None:
        word = label("void", lang)
        reason = data.void_reason.strip() or label("void_no_reason", lang)
        note = label("void_note", lang, reason=reason)
    elif data.superseded_by is not None:
        word = label("superseded", lang)
        note = label("superseded_note", lang, version=str(data.superseded_by))
    else:
        return
    flow.fit_text_band(word, max_size=flow.size * 3)
    flow.text(note, bold=True, after=0.5)


def _watermark(data: SlipData) -> Overlay | None:
    """The mark's word again, outlined and slanted across every page, so that no part of
    a marked printout can be cut off and pass for a good one."""
    if data.void_reason is not None:
        word = label("void", data.language)
    elif data.superseded_by is not None:
        word = label("superseded", data.language)
    else:
        return None

    angle = math.radians(35)

    def draw(c: Any, x: float, y: float, width: float, height: float) -> None:
        # The slanted word's box (its length along the slant, a cap height across it)
        # fits the column.
        per_pt = _width(word, BOLD, 1.0)
        size = min(0.9 * width / (per_pt * math.cos(angle) + 0.75 * math.sin(angle)), 72.0)
        rise = per_pt * size * math.sin(angle) + 0.75 * size * math.cos(angle)
        step = max(rise * 1.4, 30 * MM)
        c.saveState()
        clip = c.beginPath()
        clip.rect(x, y, width, height)
        c.clipPath(clip, stroke=0, fill=0)
        c.setStrokeGray(0)
        c.setLineWidth(max(size / 40, 3 * DOT))
        c.setFont(BOLD, size)
        centre = y + height - rise / 2
        while centre + rise / 2 > y:
            c.saveState()
            c.translate(x + width / 2, centre)
            c.rotate(math.degrees(angle))
            c.drawCentredString(0, -0.375 * size, word, mode=1)  # outline only
            c.restoreState()
            centre -= step
        c.restoreState()

    return draw


def _placeholder_note(flow: _Flow, language: str, *, emergency: bool = False) -> None:
    """The QR points at the shipped placeholder server: it opens nothing yet. On the
    emergency slip the note says that this changes nothing about going now."""
    note = "placeholder_note_emergency" if emergency else "placeholder_note"

    def fill(box: _Flow) -> None:
        box.text(label("placeholder_title", language), bold=True, after=0.2)
        box.text(label(note, language), size=box.size - 0.5, after=0.2)
        box.text(label("placeholder_fix", language), size=box.size - 1.5, after=0)

    flow.framed(fill)


def _code_and_qr(flow: _Flow, code: str, url: str, language: str, code_size: float) -> None:
    def code_lines(column: _Flow) -> None:
        if code:
            column.text(label("referral_code", language), align="center", after=0.1)
            column.fit_text(code, max_size=code_size)

    def scan_lines(column: _Flow) -> None:
        small = column.size - 1.5
        column.text(label("scan", language), align="center", size=small, after=0.1)
        column.text(_address(column, url, small), align="center", size=small)

    def beside(column: _Flow) -> None:
        code_lines(column)
        column.gap(1)
        scan_lines(column)

    if url and flow.qr_beside(url, beside):
        return
    code_lines(flow)
    if url:
        flow.qr(url)
        scan_lines(flow)


def render_slip(data: SlipData, fmt: str = "receipt80") -> bytes:
    """The referral slip: what to do next, the code in large type, its QR, the CES card."""
    code = _checked_code(data)
    lang = data.language
    title, instruction, steps = _texts(data.level, lang, data.emergency_number)

    url = _qr_url(data)

    def build(flow: _Flow) -> None:
        _mark(flow, data)
        _header(flow, data.booth_name, data.event, data.visit_date, lang)
        flow.text(title, bold=True, size=flow.size + 5, align="center", after=0.2)
        flow.text(instruction, bold=True, size=flow.size + 1)
        for step in steps:
            flow.text(step, bullet="•", after=0.2)
        if data.reasons:
            flow.gap(0.5)
            flow.text(f"{label('why', lang)}: " + "; ".join(data.reasons), size=flow.size - 0.5)
        if code or url:
            flow.rule()
            _code_and_qr(flow, code, url, lang, flow.size * 2.6)
            if url and data.server_placeholder:
                _placeholder_note(flow, lang)
        _ces_card(flow, lang, data.emergency_number)

    return _produce(fmt, _title("Referral slip", code, data), build, **_marking(data))


def _marking(data: SlipData) -> dict[str, Any]:
    """``_produce`` arguments for a marked printout: the watermark, smaller type allowed."""
    if not data.marked:
        return {}
    return {"overlay": _watermark(data), "min_size": MARKED_MIN_SIZE}


def _qr_url(data: SlipData) -> str:
    """What the QR carries: nothing on a marked printout, so it cannot be used to book."""
    return "" if data.marked else data.url


def _title(kind: str, code: str, data: SlipData) -> str:
    mark = " (void)" if data.void_reason is not None else ""
    mark = mark or (" (replaced)" if data.superseded_by is not None else "")
    return f"{kind} {code}".strip() + mark


def render_emergency_slip(data: SlipData, fmt: str = "receipt80") -> bytes:
    """The emergency slip: the instruction first, why in plain words, then for the ED."""
    code = _checked_code(data)
    lang = data.language
    _, instruction, steps = _texts("emergency", lang, data.emergency_number)

    def staff(box: _Flow) -> None:
        box.text(label("for_staff", lang), bold=True, after=0.2)
        box.text(label("staff_note", lang), size=box.size - 1)
        if data.rule_ids:
            rules = f"{label('rules', lang)}: {', '.join(data.rule_ids)}"
            if data.ruleset_version:
                rules += f" ({label('ruleset', lang)} {data.ruleset_version})"
            box.text(rules, bold=True, size=box.size - 0.5)
        where = ", ".join(part for part in (data.booth_name, data.event) if part)
        day = _local_date(data.visit_date).isoformat()
        box.text(f"{label('booth', lang)}: {where} · {day}", size=box.size - 1)
        if code:
            box.text(f"{label('code', lang)}: {code}", size=box.size - 1, after=0)

    url = _qr_url(data)

    def build(flow: _Flow) -> None:
        _mark(flow, data)
        flow.text(instruction, bold=True, size=flow.size + 6, inverse=True, after=0.4)
        for step in steps:
            flow.text(step, bold=True, size=flow.size + 1.5, bullet="•", after=0.2)
        flow.rule()
        if data.reasons:
            flow.text(f"{label('why', lang)}:", bold=True, size=flow.size + 1, after=0.1, keep=True)
            for reason in data.reasons:
                flow.text(reason, bullet="•", size=flow.size + 0.5, after=0.2)
            flow.gap(1)
        # The QR is for the triage team; on a wide page it sits beside the staff box.
        if not (url and flow.qr_beside(url, lambda column: column.framed(staff))):
            flow.framed(staff)
            if url:
                flow.qr(url)
        if url and data.server_placeholder:
            _placeholder_note(flow, lang, emergency=True)
        _ces_card(flow, lang, data.emergency_number)

    return _produce(fmt, _title("Emergency slip", code, data), build, **_marking(data))


def render_consent_copy(data: SlipData, fmt: str = "receipt80") -> bytes:
    """What the person agreed to and refused, and how to withdraw with their code."""
    if data.consent is None:
        raise RenderError("this visit has no consent record to copy")
    code = _checked_code(data)
    lang = data.language
    wording, controller = consent_wording(lang, data.consent_context)
    choices = {str(k).lower(): bool(v) for k, v in data.consent.items()}
    ordered = sorted(choices)

    def item(cid: str) -> str:
        return f"{cid.upper()}: {wording.get(cid, cid)}"

    def build(flow: _Flow) -> None:
        _mark(flow, data)
        _header(flow, data.booth_name, data.event, data.visit_date, lang)
        flow.text(label("consent_title", lang), bold=True, size=flow.size + 4, align="center")
        if code:
            flow.fit_text(code, max_size=flow.size * 2)
        for heading, granted, mark in (
            (label("agreed", lang), True, "✓"),
            (label("refused", lang), False, "✗"),
        ):
            flow.gap(1)
            flow.text(heading + ":", bold=True, size=flow.size + 1, after=0.2, keep=True)
            chosen = [cid for cid in ordered if choices[cid] is granted]
            for cid in chosen:
                flow.text(item(cid), bullet=mark, after=0.2)
            if not chosen:
                flow.text(label("none", lang), bullet="–")
        if data.consent_version:
            flow.text(
                f"{label('consent_version', lang)}: {data.consent_version}", size=flow.size - 1.5
            )
        if code:
            flow.rule()
            flow.text(label("withdraw", lang, controller=controller, code=code), bold=True)
        _ces_card(flow, lang, data.emergency_number)

    return _produce(fmt, _title("Consent copy", code, data), build, **_marking(data))


def render_day_summary(data: DaySummaryData, fmt: str = "receipt80") -> bytes:
    """Counts by outcome, consent rates and what is still unsent, for the coordinator."""
    lang = data.language
    asked = data.visits if data.consent_asked is None else data.consent_asked

    def build(flow: _Flow) -> None:
        flow.text(label("summary_title", lang), bold=True, size=flow.size + 5, align="center")
        _header(flow, data.booth_name, data.event, data.day, lang)
        if data.kit_id:
            flow.text(f"{label('kit', lang)}: {data.kit_id}", size=flow.size - 1, align="center")
        flow.text(f"{label('visits', lang)}: {data.visits}", bold=True, size=flow.size + 3)
        counts = data.counts_by_outcome
        recorded = [lv for lv in SUMMARY_LEVELS if lv not in ADVICE_ONLY]
        recorded += sorted(set(counts) - set(SUMMARY_LEVELS))
        for heading, levels in (("by_outcome", recorded), ("advice_only", ADVICE_ONLY)):
            flow.text(label(heading, lang) + ":", bold=True, after=0.2, keep=True)
            for level in levels:
                count = counts.get(level, 0)
                flow.text(f"{level_name(level, lang)}: {count}", bullet="•", after=0.15)
        flow.gap(1)
        flow.text(label("consent_rates", lang) + ":", bold=True, after=0.2, keep=True)
        for cid in sorted(data.consent_granted, key=str.lower):
            granted = data.consent_granted[cid]
            pct = f"{100 * granted / asked:.0f} %" if asked else "-"
            flow.text(
                f"{cid.upper()} {item_name(cid, lang)}: {granted}/{asked} ({pct})",
                bullet="•",
                after=0.15,
            )
        flow.rule()
        if data.server_placeholder:
            flow.text(label("placeholder_summary", lang), bold=True, inverse=True, after=0.6)
        flow.text(f"{label('unsent', lang)}: {data.unsent}", bold=True, size=flow.size + 3)
        if data.oldest_unsent is not None:
            oldest = data.oldest_unsent
            when = (oldest.astimezone() if oldest.tzinfo else oldest).strftime("%Y-%m-%d %H:%M")
            flow.text(f"{label('oldest_unsent', lang)}: {when}")
        if data.set_aside:
            flow.text(f"{label('set_aside', lang)}: {data.set_aside}", bold=True)
        if data.unsent_codes:
            flow.text(f"{label('unsent_codes', lang)}:", after=0.1, keep=True)
            shown = list(data.unsent_codes[:MAX_UNSENT_CODES])
            for unsent in shown:
                flow.text(unsent, bullet="•", size=flow.size - 0.5, after=0.1)
            if len(data.unsent_codes) > len(shown):
                more = len(data.unsent_codes) - len(shown)
                flow.text(label("more", lang, count=str(more)), size=flow.size - 0.5)
        _ces_card(flow, lang, data.emergency_number)

    return _produce(fmt, f"Day summary {data.day.isoformat()}", build, one_page=False)


def render_reconciliation(data: ReconciliationData, fmt: str = "receipt80") -> bytes:
    """The end-of-day sync reconciliation: captured, sent, confirmed, conflicts, set
    aside, purged, still only on this laptop, and a plain verdict."""

    def build(flow: _Flow) -> None:
        flow.text("Sync reconciliation", bold=True, size=flow.size + 4, align="center")
        if data.day is not None:
            _header(flow, data.booth_name, data.event, data.day, "en")
        else:
            flow.text(f"{data.booth_name} · all days", align="center")
            flow.rule()
        flow.text(f"Kit: {data.kit_id}", size=flow.size - 1, align="center")
        ok = data.only_here == 0 and not data.conflicts and not data.set_aside
        verdict = (
            "Every record reached the triage server, confirmed by a receipt."
            if ok
            else "NOT everything is confirmed: see below."
        )
        flow.text(verdict, bold=True, inverse=not ok, after=0.6)
        for words, value in (
            ("Captured", f"{data.visits} visits ({data.records} records)"),
            ("Sent", f"{data.sent} records"),
            ("Confirmed by receipt", f"{data.confirmed} records"),
            ("Conflicts", str(len(data.conflicts))),
            ("Set aside", str(len(data.set_aside))),
            ("Purged (contact removed)", f"{data.purged_visits} visits"),
            (
                "Consent withdrawn",
                f"{data.withdrawn_visits} visits "
                f"({len(data.withdrawn_on_slip_page)} on the slip's page)",
            ),
            ("Still only on this laptop", f"{data.only_here} records"),
        ):
            flow.text(f"{words}: {value}", bullet="•", after=0.15)
        for heading, entries in (("Conflicts", data.conflicts), ("Set aside", data.set_aside)):
            if entries:
                flow.rule()
                flow.text(f"{heading}:", bold=True, keep=True)
                for code, reason in list(entries)[:MAX_UNSENT_CODES]:
                    flow.text(f"{code}: {reason}", bullet="•", size=flow.size - 0.5)
        if data.withdrawn_on_slip_page:
            flow.rule()
            flow.text("Withdrawn on the slip's page (contact removed):", bold=True, keep=True)
            for code in list(data.withdrawn_on_slip_page)[:MAX_UNSENT_CODES]:
                flow.text(code, bullet="•", size=flow.size - 0.5, after=0.1)
        if data.only_here_codes:
            flow.rule()
            flow.text("Not yet sent (codes):", bold=True, keep=True)
            for code in list(data.only_here_codes)[:MAX_UNSENT_CODES]:
                flow.text(code, bullet="•", size=flow.size - 0.5, after=0.1)
        if data.last_error:
            flow.text(f"Last problem: {data.last_error}", size=flow.size - 0.5)

    title = f"Sync reconciliation {data.day.isoformat() if data.day else 'all days'}"
    return _produce(fmt, title, build, one_page=False)


def render_visit_slip(data: SlipData, fmt: str = "receipt80") -> bytes:
    """The slip a visit gets: the emergency slip for an emergency, else the referral slip."""
    if data.level == "emergency":
        return render_emergency_slip(data, fmt)
    return render_slip(data, fmt)

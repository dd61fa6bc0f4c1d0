"""The attendee's landing page for a referral code: phone-sized, self-contained HTML.

It shows no personal or health data beyond the next step for the outcome level, and
only when the person agreed to share with tele-triage (consent C2). Every page, "not found"
and "too many requests" included, is in the slip's language and ends with the cauda equina
warning and the emergency number: whoever scans a slip may be the one who needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from forms.texts import ces_warning, emergency_number_line, language_names, outcome_text, page_text


@dataclass(frozen=True)
class Page:
    status: int
    html: str


def page_language(*candidates: str | None) -> str:
    """The first candidate the pages are written in; English otherwise."""
    known = language_names()
    for candidate in candidates:
        if candidate and candidate.lower() in known:
            return candidate.lower()
    return "en"


STYLE = """
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
font-size:20px;line-height:1.45;color:#111;background:#fff}
main{max-width:34em;margin:0 auto;padding:1.2em 1em 2em}
h1{font-size:1.6em;line-height:1.2;margin:.2em 0 .6em}
.lead{font-size:1.15em;font-weight:600}
.box{border-left:.4em solid #0b5fff;padding:.2em 0 .2em .8em;margin:1em 0}
.em{border-color:#c00000}
.warn{border:2px solid #c00000;border-radius:.4em;padding:.6em .9em;margin-top:1.6em}
.warn h2{font-size:1em;margin:0 0 .4em;color:#c00000}
ul{padding-left:1.2em;margin:.3em 0}
li{margin:.25em 0}
.code{font-family:ui-monospace,monospace;letter-spacing:.08em;font-size:.9em;color:#444}
button{font:inherit;font-weight:600;width:100%;min-height:3em;padding:.6em 1em;
border:2px solid #0b5fff;border-radius:.4em;background:#0b5fff;color:#fff}
a{color:#0b4fcf}
a.call{display:block;text-align:center;font-weight:600;padding:.7em 1em;margin:1em 0;
border:2px solid #0b5fff;border-radius:.4em;text-decoration:none}
a.call[href^="tel:"]{background:#c00000;border-color:#c00000;color:#fff;font-size:1.2em}
button.slot{background:#fff;color:#0b4fcf}
form p{margin:.5em 0}
input,select{font:inherit;width:100%;min-height:2.6em;padding:.3em .5em}
h2{font-size:1.15em;margin:1.2em 0 .4em}
"""


def render_page(title: str, content: str, *, language: str = "en", status: int = 200) -> Page:
    html = (
        "<!doctype html>"
        f'<html lang="{escape(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{content}</main></body></html>"
    )
    return Page(status=status, html=html)


def warning(language: str, emergency_number: str) -> str:
    """The cauda equina warning signs and the number to call: on every attendee page."""
    heading, signs = ces_warning(language)
    items = "".join(f"<li>{escape(s)}</li>" for s in signs)
    number = emergency_number_line(language, emergency_number)
    return (
        f'<section class="warn"><h2>{escape(heading)}</h2><ul>{items}</ul>'
        f"<p>{escape(number)}</p></section>"
    )


def not_found(language: str = "en", emergency_number: str = "") -> Page:
    """The generic page: the same for an unknown code, a bare code and a bad signature."""
    title = page_text("not_found_title", language)
    return render_page(
        title,
        f"<h1>{escape(title)}</h1><p>{escape(page_text('not_found_note', language))}</p>"
        f"<p>{escape(page_text('slip_advice', language))}</p>"
        + warning(language, emergency_number),
        language=language,
        status=404,
    )


def too_many(language: str = "en", emergency_number: str = "") -> Page:
    return render_page(
        page_text("too_many_title", language),
        f"<h1>{escape(page_text('too_many_heading', language))}</h1>"
        f"<p>{escape(page_text('too_many_note', language))}</p>"
        f"<p>{escape(page_text('slip_advice', language))}</p>"
        + warning(language, emergency_number),
        language=language,
        status=429,
    )


def pending(code: str, language: str = "en", emergency_number: str = "") -> Page:
    return render_page(
        page_text("title", language),
        f"<h1>{escape(page_text('pending_heading', language))}</h1>"
        f'<p class="lead">{escape(page_text("pending_lead", language))}</p>'
        f"<p>{escape(page_text('pending_note', language))}</p>"
        f'<p class="code">{escape(code)}</p>' + warning(language, emergency_number),
        language=language,
    )


def not_shared(code: str, language: str = "en", emergency_number: str = "") -> Page:
    return render_page(
        page_text("title", language),
        f"<h1>{escape(page_text('not_shared_heading', language))}</h1>"
        f"<p>{escape(page_text('not_shared_note', language))}</p>"
        f'<p class="code">{escape(code)}</p>' + warning(language, emergency_number),
        language=language,
    )


def next_steps(
    code: str, level: str, language: str, emergency_number: str, *, booth: str | None = None
) -> Page:
    title, instruction, steps = outcome_text(level, language, emergency_number=emergency_number)
    box = "box em" if level == "emergency" else "box"
    items = "".join(f"<li>{escape(s)}</li>" for s in steps)
    content = (
        f"<h1>{escape(title)}</h1>"
        f'<div class="{box}"><p class="lead">{escape(instruction)}</p></div>'
        + (f"<ul>{items}</ul>" if items else "")
        + f'<p class="code">{escape(code)}</p>'
        + (f'<p class="booth">{escape(booth)}</p>' if booth else "")
        + warning(language, emergency_number)
    )
    return render_page(title, content, language=language)

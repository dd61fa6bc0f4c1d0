"""The attendee's landing page for a referral code: phone-sized, self-contained HTML.

It shows no personal or health data beyond the next step for the outcome level, and
only when the person agreed to share with tele-triage (consent C2).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from forms.texts import ces_warning, outcome_text


@dataclass(frozen=True)
class Page:
    status: int
    html: str


def outcome_texts(level: str, language: str, emergency_number: str) -> tuple[str, str, list[str]]:
    return outcome_text(level, language, emergency_number=emergency_number)


def _ces(language: str) -> tuple[str, list[str]]:
    return ces_warning(language)


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
"""


def _page(title: str, content: str, *, language: str = "en", status: int = 200) -> Page:
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


def _warning(language: str) -> str:
    heading, signs = _ces(language)
    items = "".join(f"<li>{escape(s)}</li>" for s in signs)
    return f'<section class="warn"><h2>{escape(heading)}</h2><ul>{items}</ul></section>'


def not_found() -> Page:
    return _page(
        "Not found",
        "<h1>Not found</h1><p>There is no page at this address.</p>",
        status=404,
    )


def too_many() -> Page:
    return _page(
        "Too many requests",
        "<h1>Please wait a minute</h1><p>Too many requests from this network. "
        "Try again in a minute.</p>",
        status=429,
    )


def pending(code: str, language: str = "en") -> Page:
    return _page(
        "Your referral",
        "<h1>Your booth will upload your referral soon</h1>"
        '<p class="lead">Thank you. Your referral has not reached us yet.</p>'
        "<p>Booths send their referrals when they have a connection, usually by the end "
        "of the day. Open this page again later, or follow the advice on your slip.</p>"
        f'<p class="code">{escape(code)}</p>' + _warning(language),
        language=language,
    )


def not_shared(code: str, language: str = "en") -> Page:
    return _page(
        "Your referral",
        "<h1>Follow the advice on your slip</h1>"
        "<p>No referral details are shared with tele-triage for this code. "
        "If you want an appointment, contact your doctor or the booth team.</p>"
        f'<p class="code">{escape(code)}</p>' + _warning(language),
        language=language,
    )


def next_steps(
    code: str, level: str, language: str, emergency_number: str, *, booth: str | None = None
) -> Page:
    title, instruction, steps = outcome_texts(level, language, emergency_number)
    box = "box em" if level == "emergency" else "box"
    items = "".join(f"<li>{escape(s)}</li>" for s in steps)
    content = (
        f"<h1>{escape(title)}</h1>"
        f'<div class="{box}"><p class="lead">{escape(instruction)}</p></div>'
        + (f"<ul>{items}</ul>" if items else "")
        + f'<p class="code">{escape(code)}</p>'
        + (f'<p class="booth">{escape(booth)}</p>' if booth else "")
        + _warning(language)
    )
    return _page(title, content, language=language)

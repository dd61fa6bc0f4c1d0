"""The pages of withdrawal from the slip's page, in the slip's language.

Plain HTML forms with no script: the slip's signature travels in the form, so no cookie is
needed and a page from another site gains nothing it could not do with the signature.
"""

from __future__ import annotations

from html import escape

from sync.server import landing
from sync.server.landing import Page

LANGUAGES = ("en", "es")

# A second style block (allowed by its own hash in the CSP): the button a thumb presses.
STYLE = """
button{font:inherit;font-weight:600;width:100%;padding:.75em 1em;border:2px solid #111;
border-radius:.4em;background:#111;color:#fff;cursor:pointer}
.withdraw{margin-top:1.6em;color:#333}
"""

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "offer": "Withdraw my consent",
        "offer_note": "You can change your mind at any time, as easily as you agreed.",
        "confirm_title": "Withdraw your consent?",
        "confirm_lead": "If you withdraw:",
        "keeps_fact": (
            "the centre keeps only the fact that you withdrew; your answers and contact "
            "details are removed"
        ),
        "reminders": "follow-up reminders stop",
        "advice": "the advice you were already given stays valid",
        "safety": "the warning signs below stay on this page",
        "confirm": "Yes, withdraw my consent",
        "back": "No, go back",
        "done_title": "Your consent is withdrawn",
        "done_lead": "The centre keeps only the fact that you withdrew.",
        "done_rest": (
            "Follow-up reminders have stopped. The advice you were already given stays valid."
        ),
    },
    "es": {
        "offer": "Retirar mi consentimiento",
        "offer_note": "Puede cambiar de opinión en cualquier momento, tan fácilmente como aceptó.",
        "confirm_title": "¿Retirar su consentimiento?",
        "confirm_lead": "Si lo retira:",
        "keeps_fact": (
            "el centro solo guarda el hecho de que usted lo retiró; sus respuestas y sus "
            "datos de contacto se eliminan"
        ),
        "reminders": "los recordatorios de seguimiento se detienen",
        "advice": "los consejos que ya recibió siguen siendo válidos",
        "safety": "las señales de alarma de abajo siguen en esta página",
        "confirm": "Sí, retirar mi consentimiento",
        "back": "No, volver",
        "done_title": "Su consentimiento está retirado",
        "done_lead": "El centro solo guarda el hecho de que usted lo retiró.",
        "done_rest": (
            "Los recordatorios de seguimiento se han detenido. Los consejos que ya recibió "
            "siguen siendo válidos."
        ),
    },
}


def language_of(value: str | None) -> str:
    return value if value in LANGUAGES else "en"


def _t(language: str, key: str) -> str:
    return TEXTS[language_of(language)][key]


def _safety(language: str, emergency_number: str) -> str:
    return landing.warning(language, emergency_number)


def _query(sig: str, language: str) -> str:
    # The signature alphabet is URL-safe; escape() still guards the attribute.
    return f"s={escape(sig)}&amp;l={escape(language)}"


def _styled(page: Page) -> Page:
    html = page.html.replace("</head>", f"<style>{STYLE}</style></head>", 1)
    return Page(status=page.status, html=html)


def offer(page: Page, code: str, sig: str, language: str) -> Page:
    """``page`` with the way to withdraw added at its end."""
    href = f"{escape(code.replace('-', ''))}/withdraw?{_query(sig, language)}"
    block = (
        f'<p class="withdraw">{escape(_t(language, "offer_note"))} '
        f'<a href="{href}">{escape(_t(language, "offer"))}</a></p>'
    )
    return _styled(
        Page(status=page.status, html=page.html.replace("</main>", block + "</main>", 1))
    )


def confirm(code: str, sig: str, language: str, emergency_number: str) -> Page:
    """The one confirmation step: what withdrawing does, then a POST form."""
    lang = language_of(language)
    compact = escape(code.replace("-", ""))
    points = "".join(
        f"<li>{escape(_t(lang, key))}</li>"
        for key in ("keeps_fact", "reminders", "advice", "safety")
    )
    content = (
        f"<h1>{escape(_t(lang, 'confirm_title'))}</h1>"
        f'<div class="box"><p class="lead">{escape(_t(lang, "confirm_lead"))}</p>'
        f"<ul>{points}</ul></div>"
        '<form method="post" action="withdraw">'
        f'<input type="hidden" name="s" value="{escape(sig)}">'
        f'<input type="hidden" name="l" value="{escape(lang)}">'
        f'<p><button type="submit" name="confirm" value="yes">{escape(_t(lang, "confirm"))}'
        "</button></p></form>"
        f'<p><a href="../{compact}?{_query(sig, lang)}">{escape(_t(lang, "back"))}</a></p>'
        f'<p class="code">{escape(code)}</p>' + _safety(lang, emergency_number)
    )
    return _styled(landing.render_page(_t(lang, "confirm_title"), content, language=lang))


def withdrawn(code: str, language: str, emergency_number: str) -> Page:
    """After a withdrawal: only that consent was withdrawn, and the safety advice."""
    lang = language_of(language)
    content = (
        f"<h1>{escape(_t(lang, 'done_title'))}</h1>"
        f'<div class="box"><p class="lead">{escape(_t(lang, "done_lead"))}</p>'
        f"<p>{escape(_t(lang, 'done_rest'))}</p></div>"
        f'<p class="code">{escape(code)}</p>' + _safety(lang, emergency_number)
    )
    return landing.render_page(_t(lang, "done_title"), content, language=lang)

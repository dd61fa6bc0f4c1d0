"""The attendee's follow-up check-in pages, phone-sized and in the slip's language.

Plain HTML forms, no script, no cookie: the slip's signature travels in the form, as on the
call page. Every page keeps the cauda equina warning and the emergency number; a warning
sign answered yes shows the emergency instruction at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from forms.texts import outcome_text
from sync.server import booking_pages, landing
from sync.server.followups import CES_FIELDS, GLOBAL_CHANGE, SBI_FIELDS, Intake
from sync.server.landing import Page

LANGUAGES = booking_pages.LANGUAGES

# A third style block (allowed by its own hash in the CSP): choices a thumb can press.
STYLE = """
fieldset{border:0;padding:0;margin:1.1em 0}
legend{font-weight:600;padding:0;margin-bottom:.3em;float:left;width:100%}
legend+*{clear:both}
label.pick{display:flex;align-items:center;gap:.6em;padding:.45em .3em;border-bottom:1px solid #ddd}
label.pick input{width:1.4em;min-height:1.4em;margin:0;flex:none}
.yesno{display:flex;gap:1em}
.yesno label.pick{flex:1;border:1px solid #999;border-radius:.4em;justify-content:center}
.bad{border-left:.4em solid #c00000;padding-left:.6em}
.err{color:#c00000;font-weight:600;margin:.2em 0}
"""

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your follow-up check-in",
        "link": "Answer your {window} check-in",
        "link_done": "You answered your {window} check-in. Change your answers",
        "week": "week {n}",
        "intro": "A few questions on how your back is now, {window} after your visit to the booth.",
        "open_until": "You can answer until {until}.",
        "answered": "You answered on {at}. Sending again replaces your answers.",
        "pain_nrs": (
            "How bad is your back pain right now, from 0 (no pain) to 10 (worst pain imaginable)?"
        ),
        "leg_pain_nrs": (
            "How bad is your leg pain right now, from 0 (no pain) to 10 (worst pain imaginable)?"
        ),
        "sbi_intro": (
            "In the last week, how bothersome was each of these? 0 = not at all, 6 = extremely"
        ),
        "sbi_leg_pain": "Leg pain",
        "sbi_numbness": "Numbness or tingling in your leg, foot or groin",
        "sbi_weakness": "Weakness in your leg or foot",
        "sbi_sitting": "Back or leg pain while sitting",
        "global_change": "Compared with when you visited the booth, your back problem is:",
        "completely_recovered": "Completely recovered",
        "much_better": "Much better",
        "slightly_better": "Slightly better",
        "no_change": "No change",
        "slightly_worse": "Slightly worse",
        "much_worse": "Much worse",
        "worse_than_ever": "Worse than ever",
        "ces_intro": "Since your visit, has any of these started or got worse?",
        "ces_saddle_numbness": "Numbness between your legs, around your bottom or genitals",
        "ces_bladder_change": "Trouble passing urine, or not being able to hold it",
        "ces_bowel_change": "Not being able to hold your bowels, or not feeling them",
        "ces_sexual_dysfunction": "New loss of sexual feeling or function",
        "yes": "Yes",
        "no": "No",
        "choose": "Choose…",
        "send": "Send my answers",
        "missing": "Please answer the questions marked below.",
        "error": "Please answer this question.",
        "thanks_title": "Thank you",
        "thanks": "Your {window} answers are saved.",
        "warning_title": "Go to the emergency department now",
        "warning_saved": (
            "Your answers were sent to the centre, but do not wait for their call: "
            "what you answered needs to be seen today."
        ),
        "next": "Your next check-in opens on {at}.",
        "over": "The follow-up check-ins are over. Thank you for answering.",
        "none_open": "There is no check-in open now.",
        "zone": "Times are {zone} time.",
        "back": "Back to your referral",
    },
    "es": {
        "title": "Su seguimiento",
        "link": "Responder a su seguimiento de la {window}",
        "link_done": "Respondió a su seguimiento de la {window}. Cambiar sus respuestas",
        "week": "semana {n}",
        "intro": (
            "Unas preguntas sobre cómo está su espalda ahora, en la {window} después de su "
            "visita al puesto."
        ),
        "open_until": "Puede responder hasta el {until}.",
        "answered": "Respondió el {at}. Si envía de nuevo, se sustituyen sus respuestas.",
        "pain_nrs": (
            "¿Cuánto le duele la espalda ahora mismo, de 0 (nada) a 10 (el peor dolor imaginable)?"
        ),
        "leg_pain_nrs": (
            "¿Cuánto le duele la pierna ahora mismo, de 0 (nada) a 10 (el peor dolor imaginable)?"
        ),
        "sbi_intro": "En la última semana, ¿cuánto le molestó cada uno? 0 = nada, 6 = muchísimo",
        "sbi_leg_pain": "El dolor de pierna",
        "sbi_numbness": "El adormecimiento u hormigueo en la pierna, el pie o la ingle",
        "sbi_weakness": "La debilidad en la pierna o el pie",
        "sbi_sitting": "El dolor de espalda o pierna al estar sentado",
        "global_change": "Comparado con cuando visitó el puesto, su problema de espalda está:",
        "completely_recovered": "Completamente recuperado",
        "much_better": "Mucho mejor",
        "slightly_better": "Algo mejor",
        "no_change": "Igual",
        "slightly_worse": "Algo peor",
        "much_worse": "Mucho peor",
        "worse_than_ever": "Peor que nunca",
        "ces_intro": "Desde su visita, ¿ha empezado o empeorado alguno de estos?",
        "ces_saddle_numbness": (
            "Adormecimiento entre las piernas, alrededor de las nalgas o los genitales"
        ),
        "ces_bladder_change": "Dificultad para orinar, o no poder retener la orina",
        "ces_bowel_change": "No poder retener las heces, o no notarlas",
        "ces_sexual_dysfunction": "Pérdida nueva de sensibilidad o de función sexual",
        "yes": "Sí",
        "no": "No",
        "choose": "Elija…",
        "send": "Enviar mis respuestas",
        "missing": "Responda las preguntas marcadas abajo.",
        "error": "Responda esta pregunta.",
        "thanks_title": "Gracias",
        "thanks": "Sus respuestas de la {window} están guardadas.",
        "warning_title": "Vaya a urgencias ahora",
        "warning_saved": (
            "Sus respuestas se enviaron al centro, pero no espere su llamada: lo que ha "
            "respondido debe verse hoy."
        ),
        "next": "Su próximo seguimiento se abre el {at}.",
        "over": "Los seguimientos han terminado. Gracias por responder.",
        "none_open": "No hay ningún seguimiento abierto ahora.",
        "zone": "Las horas son de {zone}.",
        "back": "Volver a su derivación",
    },
}


def language_of(value: str | None) -> str:
    return value if value in LANGUAGES else "en"


def _t(language: str, key: str, **values: str) -> str:
    words = TEXTS[language_of(language)][key]
    return words.format(**values) if values else words


def window_name(window: str, language: str) -> str:
    """'w2' as the attendee reads it: 'week 2' / 'semana 2'; other names as they are."""
    found = re.fullmatch(r"w(\d+)", window)
    return _t(language, "week", n=found.group(1)) if found else window


def _styled(page: Page) -> Page:
    html = page.html.replace("</head>", f"<style>{STYLE}</style></head>", 1)
    return Page(status=page.status, html=html)


def _query(sig: str, language: str) -> str:
    return f"s={escape(sig)}&amp;lang={escape(language)}"


def _page(
    code: str,
    sig: str,
    language: str,
    number: str,
    zone: ZoneInfo,
    title: str,
    content: str,
    status: int = 200,
) -> Page:
    lang = language_of(language)
    back = (
        f'<p><a href="../{escape(booking_pages.compact(code))}?{_query(sig, lang)}">'
        f"{escape(_t(lang, 'back'))}</a></p>"
    )
    zone_line = f'<p class="zone">{escape(_t(lang, "zone", zone=zone.key))}</p>'
    body = (
        f"<h1>{escape(title)}</h1>{content}{zone_line}{back}"
        f'<p class="code">{escape(code)}</p>' + landing.warning(lang, number)
    )
    return _styled(landing.render_page(title, body, language=lang, status=status))


def _select(name: str, top: int, chosen: str | None, lang: str) -> str:
    options = f'<option value="">{escape(_t(lang, "choose"))}</option>' + "".join(
        f'<option value="{n}"{" selected" if chosen == str(n) else ""}>{n}</option>'
        for n in range(top + 1)
    )
    return f'<select id="{name}" name="{name}">{options}</select>'


def _error(name: str, errors: list[str], lang: str) -> tuple[str, str]:
    if name not in errors:
        return "", ""
    return ' class="bad"', f'<p class="err" id="{name}-err">{escape(_t(lang, "error"))}</p>'


def _number(
    name: str, label: str, top: int, form: Mapping[str, str], errors: list[str], lang: str
) -> str:
    bad, err = _error(name, errors, lang)
    return (
        f'<div{bad}><p><label for="{name}">{escape(label)}</label></p>{err}'
        f"<p>{_select(name, top, form.get(name), lang)}</p></div>"
    )


def _radios(
    name: str,
    legend: str,
    choices: list[tuple[str, str]],
    form: Mapping[str, str],
    errors: list[str],
    lang: str,
    *,
    row: bool = False,
) -> str:
    bad, err = _error(name, errors, lang)
    picks = "".join(
        f'<label class="pick"><input type="radio" name="{name}" value="{escape(value)}"'
        f"{' checked' if form.get(name) == value else ''}> {escape(label)}</label>"
        for value, label in choices
    )
    if row:
        picks = f'<div class="yesno">{picks}</div>'
    return f"<fieldset{bad}><legend>{escape(legend)}</legend>{err}{picks}</fieldset>"


def form(
    *,
    code: str,
    sig: str,
    language: str,
    number: str,
    zone: ZoneInfo,
    window: str,
    closes: datetime,
    asked: Intake,
    values: Mapping[str, str],
    errors: list[str],
    answered_at: datetime | None,
) -> Page:
    """The check-in form; ``values`` what to show as chosen, ``errors`` the fields to mark."""
    lang = language_of(language)
    name = window_name(window, lang)
    # The window's last moment is the minute before it closes.
    until = booking_pages.when(closes.replace(second=0, microsecond=0), zone, lang)
    parts = [
        f'<p class="lead">{escape(_t(lang, "intro", window=name))}</p>',
        f"<p>{escape(_t(lang, 'open_until', until=until))}</p>",
    ]
    if answered_at is not None:
        at = booking_pages.when(answered_at, zone, lang)
        parts.append(f'<div class="box"><p>{escape(_t(lang, "answered", at=at))}</p></div>')
    if errors:
        parts.append(f'<p class="lead err" role="alert">{escape(_t(lang, "missing"))}</p>')
    fields = [_number("pain_nrs", _t(lang, "pain_nrs"), 10, values, errors, lang)]
    if asked.leg_pain:
        fields.append(_number("leg_pain_nrs", _t(lang, "leg_pain_nrs"), 10, values, errors, lang))
    if asked.sbi:
        fields.append(f"<h2>{escape(_t(lang, 'sbi_intro'))}</h2>")
        fields.extend(_number(f, _t(lang, f), 6, values, errors, lang) for f in SBI_FIELDS)
    fields.append(
        _radios(
            "global_change",
            _t(lang, "global_change"),
            [(c, _t(lang, c)) for c in GLOBAL_CHANGE],
            values,
            errors,
            lang,
        )
    )
    fields.append(f"<h2>{escape(_t(lang, 'ces_intro'))}</h2>")
    yes_no = [("yes", _t(lang, "yes")), ("no", _t(lang, "no"))]
    fields.extend(
        _radios(f, _t(lang, f), yes_no, values, errors, lang, row=True) for f in CES_FIELDS
    )
    hidden = (
        f'<input type="hidden" name="s" value="{escape(sig)}">'
        f'<input type="hidden" name="lang" value="{escape(lang)}">'
    )
    button = f'<p><button type="submit">{escape(_t(lang, "send"))}</button></p>'
    parts.append(f'<form method="post" action="checkin">{hidden}{"".join(fields)}{button}</form>')
    return _page(
        code,
        sig,
        lang,
        number,
        zone,
        _t(lang, "title"),
        "".join(parts),
        status=422 if errors else 200,
    )


def thanks(
    code: str,
    sig: str,
    language: str,
    number: str,
    zone: ZoneInfo,
    window: str,
    next_opens: datetime | None,
) -> Page:
    lang = language_of(language)
    said = _t(lang, "thanks", window=window_name(window, lang))
    content = f'<div class="box"><p class="lead">{escape(said)}</p></div>' + _next(
        lang, zone, next_opens
    )
    return _page(code, sig, lang, number, zone, _t(lang, "thanks_title"), content)


def _next(lang: str, zone: ZoneInfo, next_opens: datetime | None) -> str:
    if next_opens is None:
        return f"<p>{escape(_t(lang, 'over'))}</p>"
    return f"<p>{escape(_t(lang, 'next', at=booking_pages.when(next_opens, zone, lang)))}</p>"


def closed(
    code: str, sig: str, language: str, number: str, zone: ZoneInfo, next_opens: datetime | None
) -> Page:
    """No window open now: when the next one opens, or that they are over."""
    lang = language_of(language)
    content = (
        f'<div class="box"><p class="lead">{escape(_t(lang, "none_open"))}</p></div>'
        if next_opens is not None
        else ""
    ) + _next(lang, zone, next_opens)
    return _page(code, sig, lang, number, zone, _t(lang, "title"), content)


def warning(code: str, language: str, number: str) -> Page:
    """After a warning sign answered yes: the emergency instruction and the number to call,
    before anything else."""
    lang = language_of(language)
    _title, instruction, _steps = outcome_text("emergency", lang, emergency_number=number)
    content = (
        f"<h1>{escape(_t(lang, 'warning_title'))}</h1>"
        f'<div class="box em"><p class="lead">{escape(instruction)}</p></div>'
        + booking_pages.tel_link(lang, number)
        + f"<p>{escape(_t(lang, 'warning_saved'))}</p>"
        f'<p class="code">{escape(code)}</p>' + landing.warning(lang, number)
    )
    return landing.render_page(_t(lang, "warning_title"), content, language=lang)


def hook(page: Page, code: str, sig: str, language: str, window: str, answered: bool) -> Page:
    """The landing page with the way to the open check-in, before the warning signs."""
    lang = language_of(language)
    name = window_name(window, lang)
    label = _t(lang, "link_done" if answered else "link", window=name)
    href = f"{escape(booking_pages.compact(code))}/checkin?{_query(sig, lang)}"
    block = f'<p class="checkin"><a class="call" href="{href}">{escape(label)}</a></p>'
    marker = '<section class="warn">'
    return Page(status=page.status, html=page.html.replace(marker, block + marker, 1))

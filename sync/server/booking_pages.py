"""The attendee's call page: book a call slot or ask for a call-back, in the slip's language.

Plain HTML forms, no script and no cookie: the slip's signature travels in each form, as
for withdrawal. Every time is shown in the clinic's zone and labelled with it; every page
keeps the cauda equina warning and the emergency number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from forms.texts import outcome_text
from sync.server import landing
from sync.server.bookings import Arranged, Booking, Callback, Slot
from sync.server.landing import Page

LANGUAGES = ("en", "es")
PERIODS = {"morning": (9, 12), "afternoon": (12, 17), "evening": (17, 20)}

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "link": "Book a call with a clinician or ask for a call-back",
        "link_pending": "Ask for a call-back",
        "link_booked": "Your call: {time}. Change or cancel it",
        "link_callback": "You asked for a call-back. See or cancel it",
        "title": "Your tele-triage call",
        "emergency_title": "Do not wait for a call",
        "call_now": "Call {number} now",
        "no_booking": "A booked call is not safe for what you told the booth: do not wait.",
        "zone": "Times are {zone} time.",
        "choose": "Choose a time for a clinician to call you",
        "choose_urgent": "Choose a time in the next 24 hours",
        "change": "Change to another time",
        "book": "Hold this time",
        "booked": "Your call is booked",
        "booked_at": "A clinician will call you at {time} (about {minutes} minutes).",
        "ics": "Add it to your calendar (.ics)",
        "cancel": "Cancel this call",
        "cancelled": "Your call is cancelled.",
        "held": "This time is held for you until {until}",
        "held_note": "Confirm it to book it; after that it is offered to others.",
        "still_booked": "Until you confirm, your call stays booked for {time}.",
        "confirm": "Book this call",
        "callback_title": "Ask for a call-back",
        "callback_urgent": "A clinician will call you within 24 hours, by {time}.",
        "callback_when": "When may we call?",
        "callback_send": "Ask for a call-back",
        "callback_optional": "You do not need a call, but you may ask for one.",
        "callback_open": "You asked for a call-back between {start} and {end}.",
        "callback_open_urgent": "You asked for a call-back: a clinician will call you by {time}.",
        "callback_cancel": "Cancel the call-back request",
        "callback_pending": (
            "Your referral has not reached the centre yet. Your request is kept and the "
            "centre calls in order of need once it arrives."
        ),
        "urgent_line": (
            "If nobody has called you by {time}, go to urgent care or the emergency "
            "department today."
        ),
        "phone": "Phone number",
        "phone_why": (
            "A clinician of the tele-triage centre will call this number about the back "
            "pain you told the booth about; it is kept only for this call."
        ),
        "phone_pending": "Leave it empty if you gave your number at the booth.",
        "no_slots": "No call times are free at the moment.",
        "taken": "That time has just been taken or is no longer offered: choose another.",
        "expired": "The hold on that time ran out: choose a time again.",
        "bad_phone": "Please give a phone number of 6 to 20 digits.",
        "bad_window": "Please choose a day and a time of day.",
        "not_offered": "This is not offered for your referral.",
        "arranged": "What was arranged",
        "back": "Back to your referral",
        "days": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
        "months": (
            "January February March April May June July August September October November December"
        ),
        "ics_summary": "Tele-triage call (back pain referral)",
        "ics_description": "A clinician of the tele-triage centre will call you.",
    },
    "es": {
        "link": "Reserve una llamada con un profesional o pida que le llamen",
        "link_pending": "Pida que le llamen",
        "link_booked": "Su llamada: {time}. Cambiarla o cancelarla",
        "link_callback": "Pidió que le llamen. Verlo o cancelarlo",
        "title": "Su llamada de teletriaje",
        "emergency_title": "No espere una llamada",
        "call_now": "Llame ahora al {number}",
        "no_booking": (
            "Una llamada reservada no es segura por lo que contó en el puesto: no espere."
        ),
        "zone": "Las horas son de {zone}.",
        "choose": "Elija una hora para que un profesional le llame",
        "choose_urgent": "Elija una hora dentro de las próximas 24 horas",
        "change": "Cambiar a otra hora",
        "book": "Reservar esta hora",
        "booked": "Su llamada está reservada",
        "booked_at": "Un profesional le llamará el {time} (unos {minutes} minutos).",
        "ics": "Añadirla a su calendario (.ics)",
        "cancel": "Cancelar esta llamada",
        "cancelled": "Su llamada está cancelada.",
        "held": "Esta hora está guardada para usted hasta las {until}",
        "held_note": "Confírmela para reservarla; después se ofrece a otras personas.",
        "still_booked": "Hasta que confirme, su llamada sigue reservada para el {time}.",
        "confirm": "Reservar esta llamada",
        "callback_title": "Pida que le llamen",
        "callback_urgent": "Un profesional le llamará dentro de 24 horas, antes del {time}.",
        "callback_when": "¿Cuándo podemos llamarle?",
        "callback_send": "Pedir que me llamen",
        "callback_optional": "No necesita una llamada, pero puede pedirla.",
        "callback_open": "Pidió que le llamen entre el {start} y el {end}.",
        "callback_open_urgent": "Pidió que le llamen: un profesional le llamará antes del {time}.",
        "callback_cancel": "Cancelar la petición de llamada",
        "callback_pending": (
            "Su derivación aún no ha llegado al centro. Su petición se guarda y el centro "
            "llama por orden de necesidad cuando llegue."
        ),
        "urgent_line": (
            "Si nadie le ha llamado antes del {time}, vaya hoy a urgencias o a un centro "
            "de atención urgente."
        ),
        "phone": "Número de teléfono",
        "phone_why": (
            "Un profesional del centro de teletriaje llamará a este número por el dolor de "
            "espalda que contó en el puesto; solo se guarda para esta llamada."
        ),
        "phone_pending": "Déjelo vacío si dio su número en el puesto.",
        "no_slots": "No hay horas libres en este momento.",
        "taken": "Esa hora acaba de ocuparse o ya no se ofrece: elija otra.",
        "expired": "La reserva de esa hora caducó: elija una hora de nuevo.",
        "bad_phone": "Indique un número de teléfono de 6 a 20 cifras.",
        "bad_window": "Elija un día y un momento del día.",
        "not_offered": "Esto no se ofrece para su derivación.",
        "arranged": "Lo que se acordó",
        "back": "Volver a su derivación",
        "days": "lunes martes miércoles jueves viernes sábado domingo",
        "months": (
            "enero febrero marzo abril mayo junio julio agosto septiembre octubre "
            "noviembre diciembre"
        ),
        "ics_summary": "Llamada de teletriaje (derivación por dolor de espalda)",
        "ics_description": "Un profesional del centro de teletriaje le llamará.",
    },
}


# The triage decisions the clinicians record, as the attendee reads them.
DECISIONS: dict[str, dict[str, str]] = {
    "advice": {
        "en": "Advice on managing your back pain",
        "es": "Consejos para su dolor de espalda",
    },
    "self_management": {
        "en": "Managing it yourself, with the advice you were given",
        "es": "Manejarlo usted mismo, con los consejos que recibió",
    },
    "physiotherapy": {"en": "A referral to physiotherapy", "es": "Una derivación a fisioterapia"},
    "gp": {"en": "An appointment with your GP", "es": "Una cita con su médico de cabecera"},
    "emergency_department": {
        "en": "Go to the emergency department",
        "es": "Acudir a urgencias del hospital",
    },
    "urgent_in_person": {
        "en": "An urgent in-person review",
        "es": "Una revisión presencial urgente",
    },
    "urgent_imaging": {"en": "An urgent scan", "es": "Una prueba de imagen urgente"},
    "specialist": {"en": "A referral to a specialist", "es": "Una derivación al especialista"},
}


def language_of(value: str | None) -> str:
    return value if value in LANGUAGES else "en"


def _t(language: str, key: str, **values: str) -> str:
    words = TEXTS[language_of(language)][key]
    return words.format(**values) if values else words


def when(moment: datetime, zone: ZoneInfo, language: str) -> str:
    """A moment as the attendee reads it: weekday, date and time in the clinic's zone with
    the zone's abbreviation (GMT, BST, ...)."""
    local = moment.astimezone(zone)
    day = _t(language, "days").split()[local.weekday()]
    month = _t(language, "months").split()[local.month - 1]
    if language_of(language) == "es":
        shown = f"{day} {local.day} de {month}, {local:%H:%M}"
    else:
        shown = f"{day} {local.day} {month}, {local:%H:%M}"
    return f"{shown} {local.tzname()}"


def clock_time(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local:%H:%M} {local.tzname()}"


@dataclass(frozen=True)
class CallView:
    """Everything the call page shows for one slip."""

    code: str
    sig: str
    language: str
    emergency_number: str
    zone: ZoneInfo
    now: datetime
    # None: the visit has not reached the centre yet.
    level: str | None
    need_phone: bool
    booked: Booking | None = None
    held: Booking | None = None
    callback: Callback | None = None
    slots: list[Slot] = field(default_factory=list)
    message: str = ""
    arranged: Arranged | None = None


def compact(code: str) -> str:
    return code.replace("-", "")


def _query(sig: str, language: str) -> str:
    return f"s={escape(sig)}&amp;lang={escape(language)}"


def _hidden(view: CallView, action: str) -> str:
    return (
        f'<input type="hidden" name="s" value="{escape(view.sig)}">'
        f'<input type="hidden" name="lang" value="{escape(view.language)}">'
        f'<input type="hidden" name="action" value="{escape(action)}">'
    )


def _form(view: CallView, action: str, inner: str) -> str:
    return f'<form method="post" action="call">{_hidden(view, action)}{inner}</form>'


def _button(label: str, name: str = "", value: str = "") -> str:
    named = f' name="{escape(name)}" value="{escape(value)}"' if name else ""
    return f'<p><button type="submit"{named}>{escape(label)}</button></p>'


def _phone_field(view: CallView) -> str:
    if not view.need_phone:
        return ""
    lang = view.language
    optional = view.level is None
    note = f" {escape(_t(lang, 'phone_pending'))}" if optional else ""
    required = "" if optional else " required"
    return (
        f'<p class="why">{escape(_t(lang, "phone_why"))}{note}</p>'
        f'<p><label for="phone">{escape(_t(lang, "phone"))}</label><br>'
        f'<input id="phone" name="phone" type="tel" autocomplete="tel" inputmode="tel" '
        f'maxlength="24"{required}></p>'
    )


def _urgent_line(view: CallView, by: datetime) -> str:
    if view.level != "urgent":
        return ""
    line = _t(view.language, "urgent_line", time=when(by, view.zone, view.language))
    return f'<div class="box em"><p class="lead">{escape(line)}</p></div>'


def _slot_list(view: CallView, heading: str) -> str:
    lang = view.language
    if not view.slots:
        return f"<p>{escape(_t(lang, 'no_slots'))}</p>"
    buttons = "".join(
        f'<p><button type="submit" class="slot" name="slot" value="{s.slot_id}">'
        f"{escape(when(s.starts_at, view.zone, lang))}</button></p>"
        for s in view.slots
    )
    return f"<h2>{escape(heading)}</h2>" + _form(view, "hold", buttons)


def _windows(view: CallView) -> list[tuple[str, str]]:
    """The call-back windows offered: each time of day of the next seven days in the
    clinic's zone, from now on."""
    lang = view.language
    today = view.now.astimezone(view.zone).date()
    out = []
    for offset in range(8):
        day = today + timedelta(days=offset)
        for period, (_start, end) in PERIODS.items():
            window_end = datetime(day.year, day.month, day.day, end, tzinfo=view.zone)
            if window_end <= view.now:
                continue
            out.append((f"{day.isoformat()}|{period}", _window_label(day, period, lang)))
    return out


def _window_label(day: date, period: str, language: str) -> str:
    """Short enough for a phone's select: 'Wed 2 Dec, 17:00-20:00'."""
    weekday = _t(language, "days").split()[day.weekday()][:3]
    month = _t(language, "months").split()[day.month - 1][:3]
    start, end = PERIODS[period]
    return f"{weekday} {day.day} {month}, {start}:00-{end}:00"


def window_of(value: str, zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime] | None:
    """The window a form's ``window`` field names, if it is one of those offered."""
    day, _, period = value.partition("|")
    if period not in PERIODS:
        return None
    try:
        parsed = datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        return None
    start_hour, end_hour = PERIODS[period]
    start = parsed.replace(hour=start_hour, tzinfo=zone)
    end = parsed.replace(hour=end_hour, tzinfo=zone)
    if end <= now or start.date() > (now.astimezone(zone) + timedelta(days=7)).date():
        return None
    return max(start, now), end


def _callback_form(view: CallView) -> str:
    lang = view.language
    if view.level == "urgent":
        by = when(view.now + timedelta(hours=24), view.zone, lang)
        inner = f"<p>{escape(_t(lang, 'callback_urgent', time=by))}</p>"
    else:
        options = "".join(
            f'<option value="{escape(v)}">{escape(label)}</option>' for v, label in _windows(view)
        )
        inner = (
            f'<p><label for="window">{escape(_t(lang, "callback_when"))}</label><br>'
            f'<select id="window" name="window" required>{options}</select></p>'
        )
    intro = ""
    if view.level == "self_care":
        intro = f"<p>{escape(_t(lang, 'callback_optional'))}</p>"
    elif view.level is None:
        intro = f"<p>{escape(_t(lang, 'callback_pending'))}</p>"
    return f"<h2>{escape(_t(lang, 'callback_title'))}</h2>{intro}" + _form(
        view, "callback", inner + _phone_field(view) + _button(_t(lang, "callback_send"))
    )


def _page(view: CallView, content: str) -> Page:
    lang = view.language
    back = (
        f'<p><a href="../{escape(compact(view.code))}?{_query(view.sig, lang)}">'
        f"{escape(_t(lang, 'back'))}</a></p>"
    )
    zone = f'<p class="zone">{escape(_t(lang, "zone", zone=view.zone.key))}</p>'
    message = f'<p class="lead" role="alert">{escape(view.message)}</p>' if view.message else ""
    arranged = ""
    if view.arranged is not None:
        decision = DECISIONS.get(view.arranged.decision, {}).get(language_of(lang))
        if decision is not None:
            at = view.arranged.escalation_at
            since = f" ({when(at, view.zone, lang)})" if at is not None else ""
            arranged = (
                f'<div class="box"><h2>{escape(_t(lang, "arranged"))}</h2>'
                f'<p class="lead">{escape(decision)}{escape(since)}</p></div>'
            )
    body = (
        f"<h1>{escape(_t(lang, 'title'))}</h1>{message}{arranged}{content}{zone}{back}"
        f'<p class="code">{escape(view.code)}</p>' + landing.warning(lang, view.emergency_number)
    )
    return landing.render_page(_t(lang, "title"), body, language=lang)


def emergency(code: str, language: str, emergency_number: str) -> Page:
    """The instruction first, the number to call as a link, and no booking."""
    lang = language_of(language)
    _title, instruction, _steps = outcome_text("emergency", lang, emergency_number=emergency_number)
    content = (
        f"<h1>{escape(_t(lang, 'emergency_title'))}</h1>"
        f'<div class="box em"><p class="lead">{escape(instruction)}</p></div>'
        + tel_link(lang, emergency_number)
        + f"<p>{escape(_t(lang, 'no_booking'))}</p>"
        f'<p class="code">{escape(code)}</p>' + landing.warning(lang, emergency_number)
    )
    return landing.render_page(_t(lang, "emergency_title"), content, language=lang)


def tel_link(language: str, number: str) -> str:
    dial = "".join(ch for ch in number if ch.isdigit() or ch == "+")
    return (
        f'<p><a class="call" href="tel:{escape(dial)}">'
        f"{escape(_t(language, 'call_now', number=number))}</a></p>"
    )


def _still_booked(view: CallView) -> str:
    if view.booked is None:
        return ""
    time = when(view.booked.slot.starts_at, view.zone, view.language)
    return f"<p>{escape(_t(view.language, 'still_booked', time=time))}</p>"


def call(view: CallView) -> Page:
    lang = view.language
    if view.arranged is not None and view.arranged.decision in DECISIONS:
        # The call has happened: what was arranged replaces the wait for a call, its
        # "if nobody has called you by" line and the forms to book or cancel one.
        return _page(view, "")
    if view.held is not None:
        slot = view.held.slot
        until = view.held.held_until or view.now
        content = (
            f'<div class="box"><p class="lead">{escape(when(slot.starts_at, view.zone, lang))}</p>'
            f"<p>{escape(_t(lang, 'held', until=clock_time(until, view.zone)))}. "
            f"{escape(_t(lang, 'held_note'))}</p>{_still_booked(view)}</div>"
            + _form(view, "confirm", _phone_field(view) + _button(_t(lang, "confirm")))
            + _slot_list(view, _t(lang, "change"))
        )
        return _page(view, content)
    if view.booked is not None:
        slot = view.booked.slot
        ics = f"call.ics?{_query(view.sig, lang)}"
        at = _t(
            lang, "booked_at", time=when(slot.starts_at, view.zone, lang), minutes=str(slot.minutes)
        )
        content = (
            f'<div class="box"><p class="lead">{escape(_t(lang, "booked"))}</p>'
            f"<p>{escape(at)}</p>"
            f'<p><a href="{ics}">{escape(_t(lang, "ics"))}</a></p></div>'
            + _urgent_line(view, slot.ends_at)
            + _slot_list(view, _t(lang, "change"))
            + _form(view, "cancel", _button(_t(lang, "cancel")))
        )
        return _page(view, content)
    if view.callback is not None:
        cb = view.callback
        if view.level == "urgent":
            said = _t(lang, "callback_open_urgent", time=when(cb.deadline, view.zone, lang))
        else:
            said = _t(
                lang,
                "callback_open",
                start=when(cb.window_start, view.zone, lang),
                end=clock_time(cb.window_end, view.zone),
            )
        pending = f"<p>{escape(_t(lang, 'callback_pending'))}</p>" if view.level is None else ""
        content = (
            f'<div class="box"><p class="lead">{escape(said)}</p>{pending}</div>'
            + _urgent_line(view, cb.deadline)
            + _form(view, "cancel_callback", _button(_t(lang, "callback_cancel")))
        )
        return _page(view, content)
    parts = []
    if view.level in ("urgent", "routine"):
        heading = _t(lang, "choose_urgent" if view.level == "urgent" else "choose")
        parts.append(_slot_list(view, heading))
    # Urgent: a call-back only when no slot in the next 24 hours is free.
    if view.level != "urgent" or not view.slots:
        parts.append(_callback_form(view))
    return _page(view, "".join(parts))


def hook(
    page: Page,
    code: str,
    sig: str,
    language: str,
    level: str | None,
    emergency_number: str,
    *,
    booked: str | None = None,
    callback: bool = False,
) -> Page:
    """The landing page with the way to its call page (for emergency, the number to call
    as a link instead), placed before the warning signs."""
    lang = language_of(language)
    if level == "emergency":
        block = tel_link(lang, emergency_number)
    else:
        if booked is not None:
            label = _t(lang, "link_booked", time=booked)
        elif callback:
            label = _t(lang, "link_callback")
        else:
            label = _t(lang, "link" if level in ("urgent", "routine") else "link_pending")
        href = f"{escape(compact(code))}/call?{_query(sig, lang)}"
        block = f'<p class="book"><a class="call" href="{href}">{escape(label)}</a></p>'
    marker = '<section class="warn">'
    html = page.html.replace(marker, block + marker, 1)
    return Page(status=page.status, html=html)


def ics(booking: Booking, language: str, stamp: datetime) -> bytes:
    """The booked call as an iCalendar event, in UTC; nothing personal in it."""
    lang = language_of(language)
    cal = Calendar()
    cal.add("prodid", "-//popup-kit//tele-triage call//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = Event()
    event.add("uid", f"{booking.ref}@popup-kit")
    event.add("dtstamp", stamp)
    event.add("dtstart", booking.slot.starts_at)
    event.add("dtend", booking.slot.ends_at)
    event.add("summary", _t(lang, "ics_summary"))
    event.add("description", _t(lang, "ics_description"))
    cal.add_component(event)
    return bytes(cal.to_ical())

"""Words on paper, by language.

Outcome advice, the cauda equina warning card and the consent items' wording come from
``forms`` (one source for the screens, the slips and the server's page). Only labels
that exist on paper alone (headings, "Date", ...) live here. Unknown languages fall
back to English, as the forms texts do.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from forms.texts import TEXT_LEVELS
from forms.texts import level_name as forms_level_name

DEFAULT_LANGUAGE = "en"
SUMMARY_LEVELS = TEXT_LEVELS  # emergency ... consent_refused, most severe first

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "referral_code": "Your referral code",
        "code": "Referral code",
        "scan": "Scan the square with your phone camera. No camera? Type this address:",
        "date": "Date",
        "booth": "Booth",
        "why": "Why",
        "ces_title": "Warning signs of cauda equina syndrome",
        "emergency_number": "Emergency number",
        "for_staff": "For the emergency department",
        "staff_note": (
            "Screened at a pop-up booth by a trained volunteer (not a clinician) from the "
            "person's own answers. This is not a diagnosis."
        ),
        "rules": "Red-flag rules",
        "ruleset": "ruleset",
        "consent_title": "Your consent choices",
        "agreed": "You agreed to",
        "refused": "You did not agree to",
        "consent_version": "Consent text version",
        "withdraw": (
            "You can change your mind at any time, as easily as you agreed: give this code "
            "to the booth or to {controller}: {code}"
        ),
        "summary_title": "Day summary",
        "kit": "Kit",
        "visits": "Visits",
        "by_outcome": "By outcome",
        "advice_only": "Advice only, nothing recorded",
        "consent_rates": "Consent given (of those asked)",
        "unsent": "Visits not yet sent",
        "oldest_unsent": "Oldest unsent",
        "set_aside": "Set aside by the server",
        "unsent_codes": "Unsent codes",
        "more": "and {count} more",
        "none": "none",
        "void": "VOID",
        "void_note": (
            "This slip is void: do not follow it and do not use it to book. Reason: {reason}"
        ),
        "void_no_reason": "none given",
        "superseded": "REPLACED",
        "superseded_note": (
            "This slip was replaced by a corrected one (version {version}): follow the new "
            "slip, not this one."
        ),
        "placeholder_title": "This code does not lead anywhere yet",
        "placeholder_note": (
            "The booth's tele-triage server is not set up, so the square and the address "
            "open nothing. Ask the booth staff what to do next."
        ),
        "placeholder_note_emergency": (
            "The booth's tele-triage server is not set up, so the square opens nothing. "
            "That changes nothing above: go to the emergency department now."
        ),
        "placeholder_fix": "For the booth staff: set [server] base_url in kit.toml.",
        "placeholder_summary": (
            "The QR codes on today's slips lead nowhere yet: set [server] base_url in kit.toml."
        ),
        "item.c1": "screening",
        "item.c2": "sharing for a call",
        "item.c3": "follow-up contact",
        "item.c4": "evaluation and research",
        "item.c5": "future research contact",
    },
    "es": {
        "referral_code": "Su código de derivación",
        "code": "Código de derivación",
        "scan": (
            "Escanee el cuadrado con la cámara del teléfono. ¿Sin cámara? Escriba esta dirección:"
        ),
        "date": "Fecha",
        "booth": "Puesto",
        "why": "Motivo",
        "ces_title": "Señales de alarma del síndrome de cola de caballo",
        "emergency_number": "Número de emergencias",
        "for_staff": "Para el servicio de urgencias",
        "staff_note": (
            "Revisión hecha en un puesto por un voluntario formado (no un profesional "
            "sanitario) con las respuestas de la propia persona. No es un diagnóstico."
        ),
        "rules": "Reglas de alarma",
        "ruleset": "versión de reglas",
        "consent_title": "Sus decisiones de consentimiento",
        "agreed": "Usted aceptó",
        "refused": "Usted no aceptó",
        "consent_version": "Versión del texto de consentimiento",
        "withdraw": (
            "Puede cambiar de opinión en cualquier momento, tan fácilmente como aceptó: dé "
            "este código al puesto o a {controller}: {code}"
        ),
        "summary_title": "Resumen del día",
        "kit": "Equipo",
        "visits": "Visitas",
        "by_outcome": "Por resultado",
        "advice_only": "Solo consejos, sin registro",
        "consent_rates": "Consentimiento dado (de quienes se preguntó)",
        "unsent": "Visitas aún no enviadas",
        "oldest_unsent": "La más antigua sin enviar",
        "set_aside": "Apartadas por el servidor",
        "unsent_codes": "Códigos sin enviar",
        "more": "y {count} más",
        "none": "ninguno",
        "void": "ANULADA",
        "void_note": (
            "Esta hoja está anulada: no siga sus indicaciones ni la use para reservar. "
            "Motivo: {reason}"
        ),
        "void_no_reason": "sin indicar",
        "superseded": "SUSTITUIDA",
        "superseded_note": (
            "Esta hoja se sustituyó por otra corregida (versión {version}): siga la hoja "
            "nueva, no esta."
        ),
        "placeholder_title": "Este código aún no lleva a ninguna parte",
        "placeholder_note": (
            "El servidor de teletriaje del puesto no está configurado: el cuadrado y la "
            "dirección no abren nada. Pregunte al personal del puesto qué hacer."
        ),
        "placeholder_note_emergency": (
            "El servidor de teletriaje del puesto no está configurado: el cuadrado no abre "
            "nada. Eso no cambia nada de lo de arriba: vaya a urgencias ahora."
        ),
        "placeholder_fix": "Para el personal del puesto: configure [server] base_url en kit.toml.",
        "placeholder_summary": (
            "Los códigos QR de las hojas de hoy aún no llevan a ninguna parte: configure "
            "[server] base_url en kit.toml."
        ),
        "item.c1": "revisión",
        "item.c2": "compartir para una llamada",
        "item.c3": "contacto de seguimiento",
        "item.c4": "evaluación e investigación",
        "item.c5": "contacto futuro para investigación",
    },
}


def label(key: str, language: str, **values: str) -> str:
    table = LABELS.get(language) or LABELS[DEFAULT_LANGUAGE]
    text = table.get(key) or LABELS[DEFAULT_LANGUAGE][key]
    return text.format(**values) if values else text


def level_name(level: str, language: str) -> str:
    """The forms' short name for an outcome level (``level`` if it has none)."""
    return forms_level_name(level, language)


def item_name(item: str, language: str) -> str:
    """A short name for a consent item on the day summary (``item`` if unknown)."""
    key = f"item.{item.lower()}"
    return label(key, language) if key in LABELS[DEFAULT_LANGUAGE] else item


@lru_cache(maxsize=16)
def _consent(language: str, context: tuple[tuple[str, str], ...]) -> tuple[dict[str, str], str]:
    from forms import load_forms
    from forms.engine import Placeholders

    forms = load_forms(context=dict(context))
    # The controller as the consent text named it in this language (kit.toml's name, or
    # the forms' wording for "the organisers of this booth" in that language).
    controller = str(Placeholders(dict(context), {}).for_language(language)["controller"])
    return dict(forms.consent_document(language).items), controller


def consent_wording(
    language: str, context: Mapping[str, str] | None = None
) -> tuple[dict[str, str], str]:
    """({item id: short wording}, controller) as the consent screen showed them, in
    ``language``.

    ``context`` is what kit.toml names (provider, controller, ...), as given to
    ``forms.load_forms``; missing values take the forms defaults.
    """
    key = tuple(sorted((str(k), str(v)) for k, v in (context or {}).items()))
    items, controller = _consent(language, key)
    return dict(items), controller

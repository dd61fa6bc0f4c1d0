"""kit.toml's schema: one strict pydantic model per section.

Unknown keys and values of the wrong type are refused (strict mode: ``"18"`` is not a
number, ``true`` is not a number). Imported only when a kit.toml has not been validated
before (see popup_kit.config), so everyday commands do not pay for pydantic.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from popup_kit.config import MAX_BASE_URL_LENGTH

PerLanguage = str | dict[str, str]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)


class Booth(_Section):
    name: PerLanguage = "Pop-up back pain booth"
    """Shown on the home screen, every slip and the day summary; a string, or a table by
    language code (the default language required)."""
    event: PerLanguage = "Community screening"
    """The event's name, as for ``name``."""
    emergency_number: str = Field("999", min_length=1, max_length=40)
    """Local emergency number printed on emergency slips and shown on the emergency screen
    (it travels with each visit to the attendee's page)."""


class Screening(_Section):
    min_self_consent_age: int = Field(16, gt=0, lt=120)
    """People younger than this cannot consent for themselves: safety advice only."""
    languages: list[str] = Field(default_factory=lambda: ["en", "es"], min_length=1)
    """Languages offered at the start of a visit, in this order."""
    default_language: str = "en"
    """The language a visit starts in; one of ``languages``."""

    @model_validator(mode="after")
    def _default_is_offered(self) -> Screening:
        if self.default_language not in self.languages:
            raise ValueError("[screening] default_language must be one of [screening] languages")
        return self


class Consent(_Section):
    controller: str = ""
    """Who runs the booth (the data controller), named in the consent information."""
    provider: str = ""
    """The tele-triage provider that receives shared answers, named likewise."""


class Thresholds(_Section):
    """Overrides of forms/definitions/rules.toml's thresholds; absent = the ruleset's value."""

    night_pain_age: int | None = Field(None, ge=0)
    """UR10: night pain and age strictly above this."""
    fracture_age: int | None = Field(None, ge=0)
    """UR9: minor trauma and age strictly above this."""
    ces_window_days: int | None = Field(None, ge=0)
    """A cauda equina symptom this many days old or newer counts as new."""
    axspa_duration_weeks: int | None = Field(None, ge=0)
    """RO3: back pain lasting at least this long."""
    axspa_onset_age: int | None = Field(None, ge=0)
    """RO3: back pain that started before this age."""


class Printer(_Section):
    name: str = ""
    """CUPS printer name for printing slips; empty = none."""
    slip_format: Literal["receipt80", "receipt58", "a6"] = "receipt80"
    """80 mm roll, 58 mm roll or A6 sheet."""
    save_dir: str = ""
    """Folder where every printout is also saved as a PDF; empty = the data folder's slips."""


class Server(_Section):
    base_url: str = "https://triage.example.org"
    """Base URL of the central triage server; slip QR codes point at BASE/r/CODE."""

    @model_validator(mode="after")
    def _fits_a_small_qr(self) -> Server:
        url = self.base_url.rstrip("/")
        if not url.startswith(("http://", "https://")) or not url.isascii():
            raise ValueError("[server] base_url must be an ASCII http(s):// address")
        if len(url) > MAX_BASE_URL_LENGTH:
            raise ValueError(
                f"[server] base_url is {len(url)} characters; at most {MAX_BASE_URL_LENGTH} "
                "keep the slip's QR small enough to scan (version 7)"
            )
        self.base_url = url
        return self


class Sync(_Section):
    retention_days: int = Field(7, ge=0)
    """Days to keep personal data after the server's verified receipt."""
    interval_seconds: int = Field(60, ge=0)
    """Background sync period while the UI is open; 0 = only when asked."""


class Security(_Section):
    idle_lock_minutes: int = Field(10, ge=0)
    """The booth screen locks after this many idle minutes; 0 = never."""


class KitToml(_Section):
    booth: Booth = Field(default_factory=Booth)
    """[booth]"""
    screening: Screening = Field(default_factory=Screening)
    """[screening]"""
    consent: Consent = Field(default_factory=Consent)
    """[consent]"""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    """[thresholds]"""
    printer: Printer = Field(default_factory=Printer)
    """[printer]"""
    server: Server = Field(default_factory=Server)
    """[server]"""
    sync: Sync = Field(default_factory=Sync)
    """[sync]"""
    security: Security = Field(default_factory=Security)
    """[security]"""

    @model_validator(mode="after")
    def _per_language_names(self) -> KitToml:
        languages = set(self.screening.languages)
        default = self.screening.default_language
        for key in ("name", "event"):
            value = getattr(self.booth, key)
            # Each travels with the visit to the centre, whose bodies hold at most 200.
            if any(len(v) > 200 for v in ([value] if isinstance(value, str) else value.values())):
                raise ValueError(f"[booth] {key} must be at most 200 characters")
            if isinstance(value, str):
                continue
            unknown = sorted(set(value) - languages)
            if unknown:
                raise ValueError(
                    f"[booth] {key} has languages not in [screening] languages: "
                    + ", ".join(unknown)
                )
            if default not in value:
                raise ValueError(f"[booth] {key} needs a value for the default language {default}")
        return self


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = KitToml
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(error: Any) -> str:
    loc = tuple(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return message
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        nearest = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        hint = f"did you mean {nearest[0]}?" if nearest else "known: " + ", ".join(known)
        if len(loc) == 1:
            return f"[{loc[0]}] is not a kit.toml section; {hint}"
        return f"[{loc[0]}] {loc[1]} is not a kit.toml key; {hint}"
    if len(loc) == 1:
        return f"[{loc[0]}] must be a table of keys ({message})"
    # A union's member names (``str``, ``dict[str,str]``) follow the key: not the user's.
    return f"[{loc[0]}] {loc[1]}: {message} (got {error['input']!r})"


def validate(data: dict[str, Any]) -> dict[str, Any]:
    """The file's settings checked and completed with defaults, as plain TOML-like data.

    Raises ValueError with one line per problem, each naming its key.
    """
    try:
        model = KitToml.model_validate(data)
    except ValidationError as exc:
        lines = dict.fromkeys(_describe(e) for e in exc.errors())
        raise ValueError("\n".join(lines)) from None
    return model.model_dump(mode="json")

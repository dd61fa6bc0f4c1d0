"""The kit's configuration (kit.toml) and where its data lives.

One function, :func:`load_config`, finds and reads the configuration; tests and the CLI
pass an explicit path or set ``POPUP_KIT_CONFIG`` / ``POPUP_KIT_DATA_DIR``.
"""

from __future__ import annotations

import os
import tomllib
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONFIG_ENV = "POPUP_KIT_CONFIG"
DATA_DIR_ENV = "POPUP_KIT_DATA_DIR"
SLIP_FORMATS = ("receipt80", "receipt58", "a6")
MAX_BASE_URL_LENGTH = 91  # printouts.payload: the longest base whose slip URL fits QR v7-M
PLACEHOLDER_HOST = "triage.example.org"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or has a bad value."""


@dataclass(frozen=True)
class KitConfig:
    booth_name: str
    event: str
    emergency_number: str
    min_self_consent_age: int
    languages: tuple[str, ...]
    default_language: str
    thresholds: dict[str, int] = field(default_factory=dict)
    printer_name: str = ""
    slip_format: str = "receipt80"
    save_dir: str = ""
    server_base_url: str = "https://triage.example.org"
    retention_days: int = 7
    sync_interval: int = 60
    idle_lock_minutes: int = 10
    controller: str = ""
    provider: str = ""
    source: str = "embedded default"
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    # Per-language booth name and event, where kit.toml gives a table keyed by language.
    booth_names: dict[str, str] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)

    def booth_name_in(self, language: str) -> str:
        """The booth's name as an attendee reading ``language`` should see it."""
        return self.booth_names.get(language, self.booth_name)

    def event_in(self, language: str) -> str:
        return self.events.get(language, self.event)

    @property
    def server_is_placeholder(self) -> bool:
        """True while [server] base_url is still the shipped placeholder: slips lead nowhere."""
        return urlsplit(self.server_base_url).hostname == PLACEHOLDER_HOST

    @property
    def slips_dir(self) -> Path:
        """Where every printout is saved (printed or not), for the volunteer to find."""
        if self.save_dir:
            return Path(self.save_dir).expanduser()
        return self.data_dir / "slips"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "popup-kit.sqlite3"

    def consent_context(self) -> dict[str, str]:
        """What the consent wording names (clinical reference 3.2)."""
        return {
            "controller": self.controller,
            "provider": self.provider,
            "retention_days": str(self.retention_days),
            "emergency_number": self.emergency_number,
            "booth_name": self.booth_name,
        }

    @property
    def kit_id(self) -> str:
        """This kit's id: made once on first use and kept in the data directory."""
        return _kit_id(self.data_dir)


def default_data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("popup-kit", appauthor=False))


def default_config_text() -> str:
    return resources.files("popup_kit").joinpath("default_kit.toml").read_text("utf-8")


def _kit_id(data_dir: Path) -> str:
    path = data_dir / "kit-id"
    try:
        return path.read_text("ascii").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    kit_id = "kit-" + uuid.uuid4().hex[:12]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(kit_id + "\n", "ascii")
    os.replace(tmp, path)
    return path.read_text("ascii").strip()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _get(data: dict[str, Any], section: str, key: str, kind: type) -> Any:
    value = data.get(section, {}).get(key)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"[{section}] {key} must be a {kind.__name__}, not {value!r}")
    return value


def _per_language(
    data: dict[str, Any], key: str, default_language: str, languages: tuple[str, ...]
) -> tuple[str, dict[str, str]]:
    """``[booth] KEY`` as a string (every language) or a table keyed by language code."""
    value = data.get("booth", {}).get(key)
    if isinstance(value, str):
        return value, {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(
            f"[booth] {key} must be a string or a table of strings by language, not {value!r}"
        )
    unknown = sorted(set(value) - set(languages))
    if unknown:
        raise ConfigError(
            f"[booth] {key} has languages not in [screening] languages: {', '.join(unknown)}"
        )
    if default_language not in value:
        raise ConfigError(
            f"[booth] {key} needs a value for the default language {default_language}"
        )
    return value[default_language], dict(value)


def load_config(path: str | os.PathLike[str] | None = None) -> KitConfig:
    """Read kit.toml from ``path``, else ``$POPUP_KIT_CONFIG``, else the embedded default.

    Keys missing from the file take the embedded default's value.
    """
    default = tomllib.loads(default_config_text())
    chosen = path if path is not None else os.environ.get(CONFIG_ENV)
    data = default
    source = "embedded default"
    if chosen:
        cfg_path = Path(chosen).expanduser()
        try:
            data = _merge(default, tomllib.loads(cfg_path.read_text("utf-8")))
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file not found: {cfg_path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path} is not valid TOML: {exc}") from exc
        source = str(cfg_path)

    languages = tuple(_get(data, "screening", "languages", list))
    default_language = _get(data, "screening", "default_language", str)
    if not languages or default_language not in languages:
        raise ConfigError("[screening] default_language must be one of [screening] languages")
    slip_format = _get(data, "printer", "slip_format", str)
    if slip_format not in SLIP_FORMATS:
        raise ConfigError(f"[printer] slip_format must be one of {', '.join(SLIP_FORMATS)}")
    thresholds = data.get("thresholds", {})
    for key, value in thresholds.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"[thresholds] {key} must be a whole number, not {value!r}")
    base_url = _get(data, "server", "base_url", str).rstrip("/")
    if not base_url.startswith(("http://", "https://")) or not base_url.isascii():
        raise ConfigError("[server] base_url must be an ASCII http(s):// address")
    if len(base_url) > MAX_BASE_URL_LENGTH:
        raise ConfigError(
            f"[server] base_url is {len(base_url)} characters; at most {MAX_BASE_URL_LENGTH} "
            "keep the slip's QR small enough to scan (version 7)"
        )
    min_age = _get(data, "screening", "min_self_consent_age", int)
    if not 0 < min_age < 120:
        raise ConfigError("[screening] min_self_consent_age must be between 1 and 119")
    idle_lock = _get(data, "security", "idle_lock_minutes", int)
    if idle_lock < 0:
        raise ConfigError("[security] idle_lock_minutes must be 0 (never) or more")
    languages_t = tuple(str(x) for x in languages)
    booth_name, booth_names = _per_language(data, "name", default_language, languages_t)
    event, events = _per_language(data, "event", default_language, languages_t)
    return KitConfig(
        booth_name=booth_name,
        event=event,
        booth_names=booth_names,
        events=events,
        emergency_number=_get(data, "booth", "emergency_number", str),
        min_self_consent_age=min_age,
        languages=languages_t,
        default_language=default_language,
        thresholds=dict(thresholds),
        printer_name=_get(data, "printer", "name", str),
        slip_format=slip_format,
        save_dir=_get(data, "printer", "save_dir", str),
        server_base_url=base_url,
        retention_days=_get(data, "sync", "retention_days", int),
        sync_interval=_get(data, "sync", "interval_seconds", int),
        idle_lock_minutes=idle_lock,
        controller=_get(data, "consent", "controller", str),
        provider=_get(data, "consent", "provider", str),
        source=source,
    )

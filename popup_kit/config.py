"""The kit's configuration (kit.toml) and where its data lives.

One function, :func:`load_config`, finds and reads the configuration; tests and the CLI
pass an explicit path or set ``POPUP_KIT_CONFIG`` / ``POPUP_KIT_DATA_DIR``.
"""

from __future__ import annotations

import hashlib
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
MAX_BASE_URL_LENGTH = 86  # printouts.payload: the longest base whose slip URL fits QR v7-M
PLACEHOLDER_HOST = "triage.example.org"
CHECKED_FILE = "kit-toml-checked"


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
    # Made once on first use and kept in the data folder; read once, at load.
    kit_id: str = ""

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
    from sync.files import atomic_write, private_dir

    private_dir(data_dir)
    kit_id = "kit-" + uuid.uuid4().hex[:12]
    atomic_write(path, (kit_id + "\n").encode("ascii"))
    return kit_id


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validated_key(raw: bytes) -> str:
    """What a kit.toml checked by the schema is remembered by: its bytes and the checks'."""
    digest = hashlib.sha256()
    digest.update(resources.files("popup_kit").joinpath("config_schema.py").read_bytes())
    digest.update(b"\0" + raw)
    return digest.hexdigest()


def _check(raw: bytes, data: dict[str, Any], data_dir: Path) -> None:
    """Refuse unknown keys and wrong types (pydantic), once per distinct file.

    A file that passed is remembered by its hash in the data folder, so the commands
    run every day skip pydantic's import; the settings themselves are always read
    from the file, never from the remembered record.
    """
    key = _validated_key(raw)
    marker = data_dir / CHECKED_FILE
    try:
        if key in marker.read_text("ascii").split():
            return
    except (OSError, UnicodeDecodeError):
        pass
    from popup_kit.config_schema import validate

    try:
        validate(data)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        from sync.files import atomic_write, private_dir

        private_dir(data_dir)
        atomic_write(marker, (key + "\n").encode("ascii"))
    except OSError:
        pass  # a read-only data folder: check again next time


def load_config(
    path: str | os.PathLike[str] | None = None, data_dir: Path | None = None
) -> KitConfig:
    """Read kit.toml from ``path``, else ``$POPUP_KIT_CONFIG``, else the embedded default.

    ``data_dir`` overrides :func:`default_data_dir`. Keys missing from the file take the
    embedded default's value. Unknown keys and
    values of the wrong type stop the kit with a message naming the key.
    """
    default_text = default_config_text()
    default = tomllib.loads(default_text)
    chosen = path if path is not None else os.environ.get(CONFIG_ENV)
    data_dir = data_dir if data_dir is not None else default_data_dir()
    raw = b""
    given = default
    source = "embedded default"
    if chosen:
        cfg_path = Path(chosen).expanduser()
        try:
            raw = cfg_path.read_bytes()
            given = tomllib.loads(raw.decode("utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file not found: {cfg_path}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{cfg_path} is not valid TOML: {exc}") from exc
        source = str(cfg_path)
    if chosen:  # the embedded default is checked against the schema by the tests
        try:
            _check(raw, given, data_dir)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    data = _merge(default, given)

    booth, screening, sync = data["booth"], data["screening"], data["sync"]
    languages = tuple(screening["languages"])
    default_language = screening["default_language"]
    booth_name, booth_names = _per_language(booth["name"], default_language)
    event, events = _per_language(booth["event"], default_language)
    return KitConfig(
        booth_name=booth_name,
        event=event,
        booth_names=booth_names,
        events=events,
        emergency_number=booth["emergency_number"],
        min_self_consent_age=screening["min_self_consent_age"],
        languages=languages,
        default_language=default_language,
        thresholds=dict(data.get("thresholds", {})),
        printer_name=data["printer"]["name"],
        slip_format=data["printer"]["slip_format"],
        save_dir=data["printer"]["save_dir"],
        server_base_url=data["server"]["base_url"].rstrip("/"),
        retention_days=sync["retention_days"],
        sync_interval=sync["interval_seconds"],
        idle_lock_minutes=data["security"]["idle_lock_minutes"],
        controller=data["consent"]["controller"],
        provider=data["consent"]["provider"],
        source=source,
        data_dir=data_dir,
        kit_id=_kit_id(data_dir),
    )


def _per_language(value: str | dict[str, str], default_language: str) -> tuple[str, dict[str, str]]:
    """``[booth] KEY`` as a string (every language) or a table keyed by language code."""
    if isinstance(value, str):
        return value, {}
    return value[default_language], dict(value)

"""The server's settings: one object, read from server.toml, shared by the app and its commands.

The file is found through ``--config`` or ``POPUP_KIT_SERVER_CONFIG``; the database URL
may also come from ``POPUP_KIT_SERVER_DATABASE_URL`` so that a password need not sit in
the file. Unknown keys and wrong types are refused with the key's name.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_ENV = "POPUP_KIT_SERVER_CONFIG"
# Environment variables that override a key of the file (secrets and the database).
ENV_OVERRIDES = {
    "POPUP_KIT_SERVER_DATABASE_URL": "database_url",
    "POPUP_KIT_SERVER_SMS_TOKEN": "sms_webhook_token",
}


class ConfigError(Exception):
    """The server's configuration is missing or wrong; the message says what to fix."""


class ServerSettings(BaseModel):
    """Everything the running server needs to know, with sensible defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(
        description="SQLAlchemy URL (postgresql+psycopg://...) or SQLite file path"
    )
    key_file: str = Field(
        default="",
        description="the server's Ed25519 receipt key (made on first start, 0600); default "
        "server-key.pem beside a SQLite database, required with PostgreSQL",
    )
    public_url: str = Field(default="", description="the address kits and slips use")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8470, ge=1, le=65535, description="port to listen on")
    workers: int = Field(default=1, ge=1, le=64, description="server processes (PostgreSQL)")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="reverse proxies whose X-Forwarded-For is believed"
    )
    docs: bool = Field(default=False, description="serve the API description /openapi.json")
    emergency_number: str = Field(default="999", description="shown on urgent referral pages")
    landing_rate_count: int = Field(
        default=240, ge=1, description="referral page look-ups per network (client address)"
    )
    landing_rate_period: float = Field(
        default=1200.0, gt=0, description="... refilled over this many seconds"
    )
    code_attempts_count: int = Field(
        default=10, ge=1, description="wrong signatures a code takes before it answers 429"
    )
    code_attempts_period: float = Field(
        default=3600.0, gt=0, description="... refilled over this many seconds"
    )
    enrolment_token_hours: float = Field(
        default=24.0, gt=0, le=24 * 30, description="how long an enrolment token works"
    )
    deadline_emergency_hours: float = Field(
        default=1.0, gt=0, description="emergency safety follow-up call, from reaching the server"
    )
    deadline_urgent_hours: float = Field(
        default=24.0, gt=0, description="first call for an urgent referral, from the booth visit"
    )
    deadline_routine_days: float = Field(
        default=7.0, gt=0, description="first call for a routine referral, from the booth visit"
    )
    session_idle_minutes: float = Field(
        default=30.0, gt=0, le=24 * 60, description="a clinician's session ends after this idle"
    )
    signin_failures_per_account: int = Field(
        default=5, ge=1, description="failed sign-ins to one account before it must wait"
    )
    signin_failures_per_address: int = Field(
        default=20, ge=1, description="failed sign-ins from one address before it must wait"
    )
    signin_lockout_minutes: float = Field(
        default=15.0, gt=0, description="the window the failures are counted in, and the wait"
    )
    clinic_timezone: str = Field(
        default="Europe/London", description="IANA zone every call time is shown in"
    )
    booking_hold_minutes: float = Field(
        default=10.0, gt=0, le=60, description="how long a chosen slot is held unconfirmed"
    )
    booking_days: int = Field(
        default=14, ge=1, le=90, description="how far ahead a routine referral sees slots"
    )
    sms_webhook_url: str = Field(
        default="", description="the SMS gateway's webhook (POST JSON); empty: reminders off"
    )
    sms_webhook_token: str = Field(
        default="", description="sent to the gateway as a Bearer token (or the environment)"
    )
    sms_sender: str = Field(
        default="popup-kit", description="the sender name or number the SMS shows"
    )
    sms_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="how long one gateway request may take"
    )
    sms_max_attempts: int = Field(
        default=5, ge=1, le=50, description="tries of one reminder before it counts as failed"
    )
    reminders_every_minutes: float = Field(
        default=0.0, ge=0, description="the server sends due reminders this often; 0: off (cron)"
    )
    followup_chase_days: float = Field(
        default=3.0, ge=0, description="days after a window opens before a non-responder is chased"
    )

    followup_windows: dict[str, tuple[int, int]] = Field(
        default_factory=lambda: {"w2": (11, 17), "w6": (38, 46), "w12": (77, 91)},
        description="follow-up check-in windows: name = [first day, last day] after the visit",
    )

    @field_validator("followup_windows")
    @classmethod
    def _windows(cls, value: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        spans = sorted(value.values())
        for first, last in spans:
            if not 0 < first <= last:
                raise ValueError(f"[{first}, {last}]: a window is [first, last], 0 < first <= last")
        for (_, end), (start, _) in pairwise(spans):
            if start <= end:
                raise ValueError("follow-up windows must not overlap")
        return value

    @field_validator("clinic_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/London)") from exc
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or network") from exc
        return value


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """The server.toml to read: ``--config`` first, then ``POPUP_KIT_SERVER_CONFIG``."""
    chosen = explicit or env.get(CONFIG_ENV)
    if not chosen:
        raise ConfigError(
            f"no server configuration: pass --config FILE or set {CONFIG_ENV} "
            "(server.example.toml describes every key)"
        )
    return Path(chosen).expanduser()


def load_settings(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> ServerSettings:
    """Read and check the server's configuration."""
    env = os.environ if env is None else env
    path = config_path(explicit, env)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"server configuration {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read server configuration {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    for variable, key in ENV_OVERRIDES.items():
        if env.get(variable):
            data[key] = env[variable]
    for key in ("database_url", "key_file"):
        if isinstance(data.get(key), str) and data[key]:
            data[key] = _relative_to(path.parent, data[key])
    return settings_from(data, source=str(path))


def settings_from(data: Mapping[str, Any], *, source: str = "server.toml") -> ServerSettings:
    try:
        return ServerSettings.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_problems(exc))) from exc


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(file)"
        if err["type"] == "extra_forbidden":
            out.append(f"unknown key '{key}' (misspelled? see server.example.toml)")
        elif err["type"] == "missing":
            out.append(f"missing key '{key}'")
        else:
            out.append(f"key '{key}': {err['msg']}")
    return out


def _relative_to(folder: Path, db: str) -> str:
    """A bare SQLite path in the file is relative to the file's folder, not the cwd."""
    if "://" in db:
        return db
    path = Path(db).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def key_path(settings: ServerSettings) -> Path:
    """Where the receipt key lives: ``key_file``, else beside a SQLite database."""
    if settings.key_file:
        return Path(settings.key_file).expanduser()
    url = settings.database_url
    if "://" not in url:
        return Path(url).expanduser().resolve().parent / "server-key.pem"
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent / "server-key.pem"
    raise ConfigError("set key_file in server.toml: with PostgreSQL it has no default folder")

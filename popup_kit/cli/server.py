"""`popup-kit server run|enroll|revoke|records|export` (the central triage server) and, on a kit,
`popup-kit enroll SERVER_URL TOKEN`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from popup_kit.cli import CommandError, add_command, config_from

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from sync.server.accounts import Accounts
    from sync.server.bookings import Slot
    from sync.server.settings import ServerSettings
    from sync.server.store import ServerStore


def _server_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="server.toml to use (default: $POPUP_KIT_SERVER_CONFIG)",
    )
    parser.set_defaults(handler=handler)
    return parser


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = "Run and administer the central triage server (reads server.toml)."
    server = sub.add_parser("server", help=help_text, description=help_text)
    server.set_defaults(handler=lambda _args: _help(server))
    commands = server.add_subparsers(dest="server_command", metavar="SUBCOMMAND")

    run = _server_command(commands, "run", "Serve the sync API and the referral pages.", _run)
    run.add_argument("--host", help="address to listen on (server.toml: host)")
    run.add_argument("--port", type=int, help="port to listen on (server.toml: port)")
    run.add_argument(
        "--workers", type=int, help="server processes, PostgreSQL only (server.toml: workers)"
    )

    _server_command(
        commands, "migrate", "Create the server database or bring its schema up to date.", _migrate
    )

    enroll = _server_command(
        commands, "enroll", "Make a one-time enrolment token for a kit.", _enroll_token
    )
    enroll.add_argument("kit_id", metavar="KIT_ID", help="the kit's id (popup-kit info shows it)")
    enroll.add_argument(
        "--rekey",
        action="store_true",
        help="let this token replace the keys of a kit that is enrolled and not revoked",
    )
    enroll.add_argument("--json", action="store_true", help="print JSON")

    revoke = _server_command(commands, "revoke", "Refuse a kit's requests from now on.", _revoke)
    revoke.add_argument("kit_id", metavar="KIT_ID")
    revoke.add_argument("--reason", default="revoked by the coordinator", help="shown to the kit")

    records = _server_command(commands, "records", "List the records the server holds.", _records)
    records.add_argument("--json", action="store_true", help="print JSON")

    export = _server_command(
        commands,
        "export",
        "Write the shared referrals (consent C2, not withdrawn, not voided) as HL7 FHIR R4 "
        "bulk-data NDJSON, one file per resource type: pseudonymous Patient, Consent, "
        "QuestionnaireResponse, Observation, ServiceRequest. No name, no phone.",
        _export,
    )
    export.add_argument(
        "--fhir", required=True, metavar="DIR", type=Path, help="folder for the .ndjson files"
    )
    export.add_argument("--from", dest="since", metavar="YYYY-MM-DD", help="visits from this day")
    export.add_argument("--to", dest="until", metavar="YYYY-MM-DD", help="visits up to this day")
    export.add_argument("--json", action="store_true", help="print the counts as JSON")

    user = commands.add_parser(
        "user",
        help="Manage the centre's accounts (clinicians and coordinators).",
        description="Manage the centre's accounts (clinicians and coordinators).",
    )
    user.set_defaults(handler=lambda _args: _help(user))
    users = user.add_subparsers(dest="user_command", metavar="SUBCOMMAND")
    add = _server_command(users, "add", "Add an account (password from a prompt).", _user_add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=("clinician", "coordinator"))
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (its first line), for scripts",
    )
    disable = _server_command(
        users, "disable", "Refuse an account from now on and end its sessions.", _user_disable
    )
    disable.add_argument("name", metavar="NAME")
    listed = _server_command(users, "list", "List the accounts.", _user_list)
    listed.add_argument("--json", action="store_true", help="print JSON")

    audit = _server_command(
        commands,
        "audit",
        "Read the access audit: every view of a referral's details and every change.",
        _audit,
    )
    audit.add_argument("--json", action="store_true", help="print JSON (all entries)")
    audit.add_argument("--limit", type=int, default=200, help="newest entries shown (default 200)")

    kpi = _server_command(
        commands,
        "kpis",
        "Print the four tele-triage KPIs for a period of visit dates, a booth, an event.",
        _kpis,
    )
    kpi.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        metavar="D",
        help="first visit date (YYYY-MM-DD, clinic time zone)",
    )
    kpi.add_argument(
        "--to",
        dest="end",
        type=date.fromisoformat,
        metavar="D",
        help="last visit date (YYYY-MM-DD, clinic time zone)",
    )
    kpi.add_argument("--booth", default="", help="only this booth")
    kpi.add_argument("--event", default="", help="only this event")
    kpi.add_argument("--at", metavar="TIME", help="as the figures stood at this ISO 8601 time")
    kpi.add_argument("--json", action="store_true", help="print one JSON object per KPI")

    reminders = _server_command(
        commands,
        "reminders",
        "Send the follow-up reminders due now by SMS (C2 and C3, window open, no response "
        "yet); at most one per referral and window, so it is safe to run from cron. Exits "
        "non-zero when the gateway failed.",
        _reminders,
    )
    reminders.add_argument("--at", metavar="TIME", help="as if it were this ISO 8601 time")
    reminders.add_argument(
        "--dry-run", action="store_true", help="count what would be sent; send nothing"
    )
    reminders.add_argument("--json", action="store_true", help="print the counts as JSON")

    slots = commands.add_parser(
        "slots", help="Publish and list call slots.", description="Publish and list call slots."
    )
    slots.set_defaults(handler=lambda _args: _help(slots))
    slot_commands = slots.add_subparsers(dest="slots_command", metavar="SUBCOMMAND")
    slot_add = _server_command(
        slot_commands, "add", "Publish a call slot (or a weekly series).", _slots_add
    )
    slot_add.add_argument(
        "--start", required=True, help="ISO 8601 with offset or Z, e.g. 2026-11-24T09:00Z"
    )
    slot_add.add_argument("--minutes", required=True, type=int, help="length of one call")
    slot_add.add_argument("--capacity", required=True, type=int, help="calls at that time")
    slot_add.add_argument(
        "--weekly",
        type=int,
        default=1,
        metavar="N",
        help="repeat at the same local time (clinic_timezone) for N weeks in all",
    )
    slot_add.add_argument("--json", action="store_true", help="print JSON")
    listing = _server_command(slot_commands, "list", "List call slots from now on.", _slots_list)
    listing.add_argument("--json", action="store_true", help="print JSON")

    kit_enroll = add_command(
        sub, "enroll", "Enrol this kit with a triage server using a one-time token.", _kit_enroll
    )
    kit_enroll.add_argument("server_url", metavar="SERVER_URL", help="e.g. https://triage.org")
    kit_enroll.add_argument("token", metavar="TOKEN", help="from `popup-kit server enroll`")
    kit_enroll.add_argument("--json", action="store_true", help="print JSON")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _settings(args: argparse.Namespace) -> ServerSettings:
    from sync.server.settings import ConfigError, load_settings

    try:
        return load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        raise CommandError(f"server configuration: {exc}", 2) from exc


def _open(args: argparse.Namespace, *, create: bool = False) -> ServerStore:
    """The store on the configured database; refuses one that does not exist yet unless
    ``create``, so a wrong setting never makes a second, empty database."""
    from sqlalchemy.exc import SQLAlchemyError

    from sync.server.db import database_exists
    from sync.server.store import ServerStore

    settings = _settings(args)
    url = settings.database_url
    shown = _safe_url(url)
    try:
        if not create and not database_exists(url):
            raise CommandError(
                f"the server database {shown} does not exist or has no server tables; "
                "check database_url in server.toml, or create it with `popup-kit server migrate`"
            )
        return ServerStore(url, token_hours=settings.enrolment_token_hours)
    except (SQLAlchemyError, RuntimeError) as exc:
        raise CommandError(f"cannot open the server database {shown}: {_first_line(exc)}") from exc


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if "://" not in url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _migrate(args: argparse.Namespace) -> int:
    store = _open(args, create=True)
    try:
        version = store.schema_version
    finally:
        store.close()
    print(f"server database {_safe_url(_settings(args).database_url)} at schema {version}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from sync.server.settings import CONFIG_ENV, config_path

    settings = _settings(args)
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if workers > 1 and not settings.database_url.startswith("postgresql"):
        raise CommandError("--workers above 1 needs PostgreSQL (set database_url in server.toml)")
    # Migrate and make the receipt key once here, so that workers start on both.
    _open(args, create=True).close()
    from sync.server import keys
    from sync.server.settings import ConfigError, key_path

    try:
        keys.load_or_create(key_path(settings))
    except (ConfigError, OSError, ValueError) as exc:
        raise CommandError(f"server receipt key: {exc}") from exc
    # Each worker builds its app from the same file.
    os.environ[CONFIG_ENV] = str(config_path(getattr(args, "config", None), os.environ).resolve())
    uvicorn.run(
        "sync.server.app:from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        # The app keeps its own access log (sync.server.events): uvicorn's would write each
        # referral URL, code and signature included, with the client's address.
        access_log=False,
        proxy_headers=False,
        log_config=_LOG_CONFIG,
    )
    return 0


_LOG_CONFIG: dict[str, object] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "popup_kit.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def _enroll_token(args: argparse.Namespace) -> int:
    from sync.server.store import kit_id_problem

    problem = kit_id_problem(args.kit_id)
    if problem:
        raise CommandError(problem, 2)
    store = _open(args)
    try:
        token = store.create_enrollment(args.kit_id, rekey=args.rekey)
        hours = store.token_lifetime.total_seconds() / 3600
    finally:
        store.close()
    if args.json:
        print(json.dumps({"kit_id": args.kit_id, "token": token, "valid_hours": hours}))
    else:
        from rich.console import Console
        from rich.markup import escape

        Console().print(
            f"Enrolment token for [bold]{escape(args.kit_id)}[/] "
            f"(works once, within {hours:g} hours):\n{token}\n"
            f"On the kit: popup-kit enroll SERVER_URL {token}",
            highlight=False,
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        done = store.revoke(args.kit_id, args.reason)
    finally:
        store.close()
    if not done:
        raise CommandError(f"no kit {args.kit_id} to revoke (unknown or already revoked)")
    print(f"kit {args.kit_id} revoked: {args.reason}")
    return 0


def _records(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        records = store.records()
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.as_json() for r in records]))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(records)} records")
    for column in ("record id", "kit", "type", "content hash", "received"):
        table.add_column(column)
    for r in records:
        kind = r.record_type + (" (withdrawn)" if r.scrubbed else "")
        table.add_row(r.record_id, r.kit_id, kind, r.content_hash[:16] + "…", r.received_at)
    Console().print(table)
    return 0


def _kpis(args: argparse.Namespace) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from sync.server import kpis
    from sync.server.routers.clinic import deadlines_of

    now = None
    if args.at:
        try:
            now = datetime.fromisoformat(args.at)
        except ValueError as exc:
            raise CommandError(f"--at {args.at!r} is not an ISO 8601 time", 2) from exc
        if now.tzinfo is None:
            raise CommandError("--at needs its offset or Z", 2)
    settings = _settings(args)
    zone = ZoneInfo(settings.clinic_timezone)
    period = kpis.Period(args.start, args.end, args.booth, args.event, zone)
    store = _open(args)
    try:
        found = kpis.compute(store, deadlines_of(settings), period, now)
    finally:
        store.close()
    if args.json:
        print(json.dumps(found.as_json()))
        return 0
    for line in kpis.text_lines(found):
        print(line)
    return 0


def _reminders(args: argparse.Namespace) -> int:
    from datetime import datetime

    from sync.server import reminders

    now = None
    if args.at:
        try:
            now = datetime.fromisoformat(args.at)
        except ValueError as exc:
            raise CommandError(f"--at {args.at!r} is not an ISO 8601 time", 2) from exc
        if now.tzinfo is None:
            raise CommandError("--at needs its offset or Z", 2)
    settings = _settings(args)
    gateway = reminders.gateway_of(settings)
    if gateway is None and not args.dry_run:
        raise CommandError("reminders are off: set sms_webhook_url in server.toml", 2)
    store = _open(args)
    try:
        counts = reminders.run(store, settings, gateway, now, dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        print(json.dumps(counts.as_json()))
    else:
        line = (
            f"sent {counts.sent}, failed {counts.failed}, to retry {counts.retry}, "
            f"skipped (no SMS number) {counts.skipped}"
        )
        if args.dry_run:
            line = f"dry run: would send {len(counts.would_send)}, " + line
        print(line)
    if counts.gateway_failed:
        print(
            f"error: the SMS gateway failed {counts.failed + counts.retry} time(s); "
            "see the server's events",
            file=sys.stderr,
        )
        return 1
    return 0


def _slots_add(args: argparse.Namespace) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from sync.server.bookings import Bookings

    try:
        start = datetime.fromisoformat(args.start)
    except ValueError as exc:
        raise CommandError(f"--start {args.start!r} is not an ISO 8601 time", 2) from exc
    if start.tzinfo is None:
        raise CommandError("--start needs its offset or Z (times are stored in UTC)", 2)
    if args.minutes <= 0 or args.capacity <= 0 or not 1 <= args.weekly <= 104:
        raise CommandError("--minutes and --capacity must be positive, --weekly 1 to 104", 2)
    zone = ZoneInfo(_settings(args).clinic_timezone)
    store = _open(args)
    try:
        made = Bookings(store.engine, clock=store.clock).add_slots(
            start, args.minutes, args.capacity, weeks=args.weekly, zone=zone
        )
    finally:
        store.close()
    _print_slots(made, zone, args.json)
    return 0


def _slots_list(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from sync.server.bookings import Bookings

    zone = ZoneInfo(_settings(args).clinic_timezone)
    store = _open(args)
    try:
        found = Bookings(store.engine, clock=store.clock).slots(since=store.clock())
    finally:
        store.close()
    _print_slots(found, zone, args.json)
    return 0


def _print_slots(slots: list[Slot], zone: ZoneInfo, as_json: bool) -> None:
    rows = [
        {
            "id": s.slot_id,
            "series": s.series,
            "start_utc": s.starts_at.isoformat(),
            "start_local": s.starts_at.astimezone(zone).isoformat(),
            "zone": zone.key,
            "minutes": s.minutes,
            "capacity": s.capacity,
            "booked": s.booked,
        }
        for s in slots
    ]
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        print(
            f"{r['id']}  {r['start_local']} ({r['zone']})  {r['minutes']} min  "
            f"{r['booked']}/{r['capacity']} booked  series {r['series']}"
        )


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} {value!r}: give a day as YYYY-MM-DD", 2) from None


def _export(args: argparse.Namespace) -> int:
    from sync.server.export import export_fhir

    since, until = _day(args.since, "--from"), _day(args.until, "--to")
    if since and until and since > until:
        raise CommandError(f"--from {since} is after --to {until}", 2)
    store = _open(args)
    try:
        counts = export_fhir(
            store.engine,
            args.fhir,
            since=since,
            until=until,
            progress=lambda n: print(f"{n} referrals…", file=sys.stderr),
        )
    except OSError as exc:
        raise CommandError(f"cannot write the export in {args.fhir}: {exc}") from exc
    finally:
        store.close()
    if args.json:
        print(json.dumps({"dir": str(args.fhir), "resources": counts}))
    else:
        listed = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        print(f"FHIR R4 export in {args.fhir}: {listed}")
    return 0


def _kit_enroll(args: argparse.Namespace) -> int:
    import base64

    import requests

    from popup_kit.slips import kit_key
    from sync import protocol as p

    config = config_from(args)
    base = str(args.server_url).rstrip("/")
    key = kit_key(config)
    request = p.EnrollRequest(
        token=args.token,
        kit_id=config.kit_id,
        slip_key=base64.b64encode(key.secret).decode("ascii"),
    )
    try:
        response = requests.post(
            f"{base}{p.API_PREFIX}/enroll", json=request.model_dump(), timeout=(5, 30)
        )
    except requests.RequestException as exc:
        raise CommandError(f"cannot reach {base}: {exc}") from exc
    if not p.is_protocol_response(response.status_code, response.headers, response.content):
        raise CommandError(
            f"{base} did not answer as a popup-kit triage server "
            f"(HTTP {response.status_code}); check the URL or log in to the network first"
        )
    if response.status_code != 200:
        detail = response.json().get("detail") or response.json().get("error")
        raise CommandError(f"enrolment refused: {detail}")
    answer = p.EnrollResponse.model_validate_json(response.content)
    credentials = p.KitCredentials(
        server_url=base,
        kit_id=answer.kit_id,
        credential=answer.credential,
        receipt_key=p.ed25519_receipt_key(base64.b64decode(answer.receipt_key)),
    )
    from popup_kit.vault import save_credentials

    path = save_credentials(config, credentials)
    if args.json:
        print(json.dumps({"kit_id": answer.kit_id, "server_url": base, "credentials": str(path)}))
    else:
        print(f"kit {answer.kit_id} enrolled with {base}; credentials in {path}")
    return 0


def _accounts(args: argparse.Namespace) -> tuple[ServerStore, Accounts]:
    from sync.server.accounts import Accounts

    store = _open(args)
    return store, Accounts(store)


def _user_add(args: argparse.Namespace) -> int:
    from sync.server.accounts import name_problem

    problem = name_problem(args.name)
    if problem:
        raise CommandError(problem, 2)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("the two passwords differ", 2)
    store, accounts = _accounts(args)
    try:
        accounts.add_user(args.name, args.role, password)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from exc
    finally:
        store.close()
    print(f"user {args.name} added ({args.role})")
    return 0


def _user_disable(args: argparse.Namespace) -> int:
    store, accounts = _accounts(args)
    try:
        done = accounts.disable_user(args.name)
    finally:
        store.close()
    if not done:
        raise CommandError(f"no user {args.name} to disable (unknown or already disabled)")
    print(f"user {args.name} disabled; their sessions are ended")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    store, accounts = _accounts(args)
    try:
        users = accounts.users()
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": u.name,
                        "role": u.role,
                        "created_at": u.created_at,
                        "disabled": u.disabled,
                    }
                    for u in users
                ]
            )
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(users)} accounts")
    for column in ("name", "role", "created", "state"):
        table.add_column(column)
    for u in users:
        table.add_row(u.name, u.role, u.created_at, "disabled" if u.disabled else "active")
    Console().print(table)
    return 0


def _audit(args: argparse.Namespace) -> int:
    store, accounts = _accounts(args)
    try:
        entries = accounts.audit_entries(None if args.json else max(1, args.limit))
    finally:
        store.close()
    if args.json:
        print(json.dumps([e.as_json() for e in entries]))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"access audit, newest {len(entries)}")
    for column in ("when", "who", "role", "what", "kit", "referral", "detail"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e.at, e.user_name, e.role, e.action, e.kit_id or "", e.referral_code or "", e.detail
        )
    Console().print(table)
    return 0

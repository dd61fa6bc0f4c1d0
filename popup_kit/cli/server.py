"""`popup-kit server run|enroll|revoke|records|export` (the central triage server) and, on a kit,
`popup-kit enroll SERVER_URL TOKEN`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from popup_kit.cli import CommandError, add_command, config_from

if TYPE_CHECKING:
    from sync.server.store import ServerStore

SERVER_DB_FILE = "server.sqlite3"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = add_command(sub, "server", "Run and administer the central triage server.", None)
    server.set_defaults(handler=lambda _args: _help(server))
    commands = server.add_subparsers(dest="server_command", metavar="SUBCOMMAND")

    run = add_command(commands, "run", "Serve the sync API and the referral pages.", _run)
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    run.add_argument("--port", type=int, default=8470, help="port to listen on (8470)")
    _db_option(run)

    enroll = add_command(
        commands, "enroll", "Make a one-time enrolment token for a kit.", _enroll_token
    )
    enroll.add_argument("kit_id", metavar="KIT_ID", help="the kit's id (popup-kit shows it)")
    enroll.add_argument("--json", action="store_true", help="print JSON")
    _db_option(enroll)

    revoke = add_command(commands, "revoke", "Refuse a kit's requests from now on.", _revoke)
    revoke.add_argument("kit_id", metavar="KIT_ID")
    revoke.add_argument("--reason", default="revoked by the coordinator", help="shown to the kit")
    _db_option(revoke)

    records = add_command(commands, "records", "List the records the server holds.", _records)
    records.add_argument("--json", action="store_true", help="print JSON")
    _db_option(records)

    export = add_command(
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
    _db_option(export)

    kit_enroll = add_command(
        sub, "enroll", "Enrol this kit with a triage server using a one-time token.", _kit_enroll
    )
    kit_enroll.add_argument("server_url", metavar="SERVER_URL", help="e.g. https://triage.org")
    kit_enroll.add_argument("token", metavar="TOKEN", help="from `popup-kit server enroll`")
    kit_enroll.add_argument("--json", action="store_true", help="print JSON")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL or SQLite file (default: server.sqlite3 in the data directory); "
        "postgresql+psycopg://user@host/db for PostgreSQL",
    )


def _db_url(args: argparse.Namespace) -> str:
    if args.db:
        return str(args.db)
    data_dir = config_from(args).data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / SERVER_DB_FILE).resolve()}"


def _open(args: argparse.Namespace) -> ServerStore:
    from sqlalchemy.exc import SQLAlchemyError

    from sync.server.store import ServerStore

    url = _db_url(args)
    try:
        return ServerStore(url)
    except (SQLAlchemyError, RuntimeError) as exc:
        raise CommandError(f"cannot open the server database {url}: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from sync.server import create_app

    config = config_from(args)
    url = _db_url(args)
    try:
        app = create_app(url, emergency_number=config.emergency_number)
    except Exception as exc:
        raise CommandError(f"cannot start the server on {url}: {_first_line(exc)}") from exc
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _enroll_token(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        token = store.create_enrollment(args.kit_id)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"kit_id": args.kit_id, "token": token}))
    else:
        from rich.console import Console

        Console().print(
            f"Enrolment token for [bold]{args.kit_id}[/] (works once):\n{token}\n"
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
        receipt_key=base64.b64decode(answer.receipt_key),
    )
    path = credentials.save(config.data_dir)
    if args.json:
        print(json.dumps({"kit_id": answer.kit_id, "server_url": base, "credentials": str(path)}))
    else:
        print(f"kit {answer.kit_id} enrolled with {base}; credentials in {path}")
    return 0

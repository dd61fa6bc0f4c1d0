"""`popup-kit sync` and `popup-kit report`: the coordinator's end of the day."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from popup_kit.cli import CommandError, add_command, config_from
from sync.files import atomic_write

if TYPE_CHECKING:
    from popup_kit.config import KitConfig
    from popup_kit.store import Store
    from sync.client import SyncSummary


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "sync",
        "Send the queued records to the triage server and say where each one is. Exit 1 "
        "while anything is not yet confirmed by the server's receipt.",
        _sync,
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--time-limit",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up (and try again later) after this long; default 300",
    )

    r = add_command(
        sub,
        "report",
        "The reconciliation: captured, sent, confirmed, conflicts, set aside, purged and "
        "still only on this laptop. Exit 1 unless everything is confirmed.",
        _report,
    )
    r.add_argument("--date", metavar="YYYY-MM-DD", help="visits of this day ('all': every day)")
    r.add_argument("--out", metavar="FILE.pdf", help="also write it as a PDF")
    r.add_argument("--json", action="store_true", help="print JSON")


def _open(args: argparse.Namespace) -> tuple[KitConfig, Store]:
    from popup_kit.store import Store, StoreError

    config = config_from(args)
    try:
        return config, Store(config.db_path)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc


def _sync(args: argparse.Namespace) -> int:
    from popup_kit.enrolment import NotEnrolled
    from popup_kit.syncing import run_sync
    from sync.client import SyncConfig

    config, store = _open(args)
    try:
        sync_config = SyncConfig(total_time=args.time_limit)
        if args.json:
            summary = run_sync(config, store, sync_config=sync_config)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            with Progress(
                TextColumn("sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("records"),
                transient=True,
            ) as bar:
                task = bar.add_task("sync", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                summary = run_sync(config, store, sync_config=sync_config, progress=progress)
    except NotEnrolled as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        _print_summary(summary)
    return summary.exit_code


def _print_summary(summary: SyncSummary) -> None:
    from rich.console import Console

    out = Console(highlight=False)
    if summary.busy:
        out.print("another sync of this kit is running; nothing was done")
    out.print(
        f"sent {summary.sent} · confirmed {summary.confirmed} "
        f"(already there {summary.already_there}) · conflicts {len(summary.conflicts)} · "
        f"set aside {summary.set_aside_total} · still unsent {summary.still_unsent}"
    )
    if summary.withdrawn_on_slip_page:
        out.print(
            "consent withdrawn on the slip's page, contact removed here: "
            + ", ".join(summary.withdrawn_on_slip_page)
        )
    for entry in summary.conflicts:
        out.print(f"  conflict {entry.record_type} {entry.record_id}: {entry.reason}")
    for entry in summary.set_aside:
        out.print(f"  set aside {entry.record_type} {entry.record_id}: {entry.reason}")
    if summary.all_confirmed:
        out.print("[bold green]everything is confirmed by the triage server[/]")
    else:
        if summary.last_error:
            out.print(f"[bold]last problem:[/] {summary.last_error}")
        if summary.next_attempt_at is not None:
            when = summary.next_attempt_at.astimezone().strftime("%H:%M")
            out.print(f"next try due at {when}; run popup-kit sync again")


def _report(args: argparse.Namespace) -> int:
    from popup_kit.cli.visits import _parse_day
    from popup_kit.services import VisitService, local_day_bounds
    from popup_kit.syncing import reconcile, report_pdf

    config, store = _open(args)
    try:
        if args.date == "all":
            day, bounds = None, None
        else:
            service = VisitService(config, store=store)
            day = _parse_day(args.date, service) or service.today()
            bounds = local_day_bounds(day)
        report = reconcile(config, store, day, bounds=bounds)
    finally:
        store.close()
    if args.out:
        out = Path(args.out)
        atomic_write(out, report_pdf(config, report))
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        from rich.console import Console
        from rich.table import Table

        title = f"reconciliation, {day.isoformat() if day else 'all days'}, kit {config.kit_id}"
        table = Table(title=title, show_header=False)
        table.add_column("what")
        table.add_column("count", justify="right")
        table.add_row("captured visits", str(report.visits))
        table.add_row("records", str(report.records))
        table.add_row("sent", str(report.sent))
        table.add_row("confirmed by receipt", str(report.confirmed))
        table.add_row("conflicts", str(len(report.conflicts)))
        table.add_row("set aside", str(len(report.set_aside)))
        table.add_row("purged visits", str(report.purged_visits))
        table.add_row("consent withdrawn", str(report.withdrawn_visits))
        table.add_row("  of which on the slip's page", str(len(report.withdrawn_on_slip_page)))
        table.add_row("still only on this laptop", str(report.only_here))
        console = Console(highlight=False)
        console.print(table)
        for entry in report.conflicts + report.set_aside:
            console.print(f"  {entry['code']} {entry['type']}: {entry['reason']}")
        if report.withdrawn_on_slip_page:
            console.print(
                "withdrawn on the slip's page (contact removed here): "
                + ", ".join(report.withdrawn_on_slip_page)
            )
        if report.only_here_codes:
            console.print("not yet sent: " + ", ".join(report.only_here_codes))
        if not report.enrolled:
            console.print("this kit is not enrolled with a triage server yet")
        if args.out:
            console.print(f"PDF written to {args.out}")
        verdict = (
            "[bold green]every record reached the triage server exactly once[/]"
            if report.all_confirmed
            else "[bold red]not everything is confirmed[/]"
        )
        console.print(verdict)
    return 0 if report.all_confirmed else 1

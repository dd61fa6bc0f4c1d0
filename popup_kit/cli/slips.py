"""`popup-kit slip`, `print`, `scan` and `summary`: what goes on paper, and back.

Exit codes of `scan`: 0 a genuine slip of this kit, 3 zbar library missing, 4 no QR
readable in the image, 5 a QR that is not a referral slip, 6 a bad check character,
7 a signature that does not match this kit's key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popup_kit.cli import CommandError, add_command, config_from
from sync.files import atomic_write

if TYPE_CHECKING:
    from popup_kit.config import KitConfig
    from popup_kit.domain import VisitRecord

FORMATS = ("receipt80", "receipt58", "a6")
SCAN_EXIT = {
    "zbar_missing": 3,
    "unreadable_image": 4,
    "no_qr": 4,
    "foreign": 5,
    "bad_code": 6,
    "forged": 7,
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "slip", "Write a visit's referral slip (or consent copy) as a PDF.", _slip)
    p.add_argument("code", help="referral code (any case, dashes optional)")
    p.add_argument("--out", required=True, metavar="FILE.pdf", help="where to write the PDF")
    p.add_argument("--format", choices=FORMATS, help="slip format (default: kit.toml)")
    p.add_argument("--consent-copy", action="store_true", help="the consent copy instead")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add_command(
        sub,
        "print",
        "Print a visit's slip on the kit.toml printer (CUPS); the PDF is always saved too. "
        "Exit 0 only once CUPS has printed it; otherwise one line says why and what to do "
        "(paused, rejecting, no such printer, CUPS not running, not printed in time: the "
        "job is cancelled), the saved PDF's path is printed, and the exit code is 1. A "
        "voided visit prints with a VOID mark.",
        _print,
    )
    p.add_argument("code", help="referral code")
    p.add_argument("--format", choices=FORMATS, help="slip format (default: kit.toml)")
    p.add_argument("--consent-copy", action="store_true", help="print the consent copy")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add_command(
        sub,
        "scan",
        "Read a referral QR from a photo or screenshot, check its code and signature, and "
        "show the visit if it is in this kit (exit 3 no zbar, 4 unreadable, 5 not a "
        "referral QR, 6 bad check character, 7 forged).",
        _scan,
    )
    p.add_argument("image", type=Path, help="photo or screenshot of a slip (PNG, JPEG, ...)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add_command(
        sub,
        "summary",
        "The day summary for the booth: counts by outcome, consent given, what is unsent.",
        _summary,
    )
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the day (default: today)")
    p.add_argument("--out", metavar="FILE.pdf", help="write the PDF here")
    p.add_argument("--print", action="store_true", help="send it to the kit.toml printer")
    p.add_argument("--format", choices=FORMATS, help="page format (default: kit.toml)")


def _normalize(code: str) -> str:
    from printouts.codes import CodeError, normalize_code

    try:
        return normalize_code(code)
    except CodeError as exc:
        raise CommandError(f"{code!r} is not a referral code: {exc}", 2) from exc


def _visit(config: KitConfig, code: str) -> VisitRecord:
    from popup_kit.cli.visits import _service

    service = _service(config)
    try:
        visit = service.find_by_code(code)
    finally:
        service.close()
    if visit is None:
        raise CommandError(f"no visit with code {code} in this kit's store")
    return visit


def _slip(args: argparse.Namespace) -> int:
    from popup_kit.slips import render_visit

    config = config_from(args)
    visit = _visit(config, _normalize(args.code))
    made = render_visit(config, visit, args.format, "consent" if args.consent_copy else "slip")
    out = Path(args.out)
    try:
        atomic_write(out, made.pdf)
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from exc
    if args.json:
        print(
            json.dumps(
                {
                    "code": visit.code,
                    "kind": made.kind,
                    "format": made.fmt,
                    "path": str(out),
                    "void": visit.voided,
                }
            )
        )
    else:
        void = "VOID " if visit.voided else ""
        print(f"{void}{made.kind} for {visit.code} ({made.fmt}) written to {out}")
    return 0


def _print(args: argparse.Namespace) -> int:
    from popup_kit.slips import print_visit

    config = config_from(args)
    visit = _visit(config, _normalize(args.code))
    result = print_visit(config, visit, args.format, "consent" if args.consent_copy else "slip")
    if args.json:
        print(
            json.dumps(
                {
                    "code": visit.code,
                    "printed": result.printed,
                    "path": str(result.path),
                    "message": result.message,
                    "problem": result.problem,
                    "job": result.job,
                    "void": visit.voided,
                }
            )
        )
    elif result.printed:
        print(result.message)
    else:
        print(f"popup-kit: {result.message}", file=sys.stderr)
        print(result.path)
    return 0 if result.printed else 1


def _scan(args: argparse.Namespace) -> int:
    from popup_kit.slips import kit_key
    from printouts.scan import ScanError, scan_referral

    config = config_from(args)
    if not args.image.exists():
        raise CommandError(f"no such image: {args.image}", 2)
    try:
        found = scan_referral(args.image, [kit_key(config).secret])
    except ScanError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": exc.kind, "message": str(exc)}))
        raise CommandError(str(exc), SCAN_EXIT.get(exc.kind, 1)) from exc
    from popup_kit.cli.visits import _service

    service = _service(config)
    try:
        visit = service.find_by_code(found.code)
    finally:
        service.close()
    summary: dict[str, Any] = {
        "ok": True,
        "code": found.code,
        "url": found.url,
        "signature": "valid",
        "in_store": visit is not None,
    }
    if visit is not None:
        summary["visit"] = {
            "id": visit.visit_id,
            "triage": visit.triage,
            "rules": visit.rule_ids,
            "language": visit.language,
            "date": visit.created_at.astimezone().date().isoformat(),
            "status": visit.status,
            "sync": visit.sync_state,
        }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"genuine slip of this kit: {found.code}")
    if visit is None:
        print("the visit is not in this kit's store (made on another laptop, or removed)")
    else:
        v = summary["visit"]
        print(
            f"visit {v['id']} of {v['date']}: outcome {v['triage']}, rules "
            f"{', '.join(v['rules']) or '-'}, language {v['language']}, sync {v['sync']}"
            + (" (VOID)" if visit.voided else "")
        )
    return 0


def _summary(args: argparse.Namespace) -> int:
    from popup_kit.cli.visits import _parse_day, _service
    from popup_kit.slips import day_summary
    from printouts.printing import print_pdf, save_pdf
    from printouts.render import render_day_summary

    config = config_from(args)
    service = _service(config)
    try:
        day = _parse_day(args.date, service) or service.today()
        data = day_summary(config, service, day)
    finally:
        service.close()
    fmt = args.format or config.slip_format
    pdf = render_day_summary(data, fmt)
    name = f"day-summary-{day.isoformat()}-{fmt}.pdf"
    if args.out:
        out = Path(args.out)
        atomic_write(out, pdf)
        print(f"day summary for {day} written to {out}")
    if args.print:
        what = f"day summary for {day}"
        result = print_pdf(pdf, config.printer_name, config.slips_dir, name, what=what)
        if not result.printed:
            print(f"popup-kit: {result.message}", file=sys.stderr)
            return 1
        print(result.message)
    if not args.out and not args.print:
        path = save_pdf(pdf, config.slips_dir, name)
        print(f"day summary for {day}: {data.visits} visits, {data.unsent} unsent; saved to {path}")
    return 0

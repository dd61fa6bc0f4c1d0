"""`popup-kit screen`, `popup-kit visit add` and `popup-kit visits`: the screening and the
visit store without the UI, for scripts, tests and back-filling paper forms."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from popup_kit.cli import CommandError, add_command, config_from

if TYPE_CHECKING:
    from popup_kit.config import KitConfig
    from popup_kit.domain import VisitRecord
    from popup_kit.services import VisitService

VISIT_KEYS = ("language", "volunteer", "consent", "contact")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "screen",
        "Evaluate one answer set (the canonical fields of the clinical reference) without "
        "the UI; nothing is stored. Exit 2 when an answer is unknown, missing or out of range.",
        _screen,
    )
    p.add_argument("--answers", required=True, metavar="FILE", help="JSON answers ('-' = stdin)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")

    visit = add_command(sub, "visit", "Record visits without the UI.", None)
    visit.set_defaults(handler=lambda _a: _help(visit))
    visit_sub = visit.add_subparsers(dest="visit_command", metavar="SUBCOMMAND")
    add = add_command(
        visit_sub,
        "add",
        "Record a whole visit from a file, exactly as the UI would (e.g. back-filling paper "
        "forms). The file is the `screen` answers plus language, volunteer, consent "
        "{c1..c5} and, only with c3, contact {name, phone}.",
        _visit_add,
    )
    add.add_argument("--answers", required=True, metavar="FILE", help="JSON visit ('-' = stdin)")
    add.add_argument("--json", action="store_true", help='print {"id", "code", "triage"}')

    fix = add_command(
        visit_sub,
        "correct",
        "Save a corrected version of a visit (by its referral code). The file gives the "
        "answers to change, as in `screen`; the others stay. The outcome is evaluated again: "
        "when it changes, this says so loudly and makes the new slip (printed when kit.toml "
        "names a printer, else saved as a PDF); the person's old slip is then wrong.",
        _visit_correct,
    )
    fix.add_argument("code", help="referral code from the person's slip")
    fix.add_argument("--answers", required=True, metavar="FILE", help="JSON changes ('-' = stdin)")
    fix.add_argument("--volunteer", default="coordinator", help="who makes the correction")
    fix.add_argument("--note", default="", help="why (kept with the version)")
    fix.add_argument("--no-slip", action="store_true", help="do not make the new slip")
    fix.add_argument("--json", action="store_true", help="print JSON")

    void = add_command(
        visit_sub,
        "void",
        "Mark a visit void (by its referral code), keeping the record and the reason. The "
        "person's slip is no longer valid.",
        _visit_void,
    )
    void.add_argument("code", help="referral code from the person's slip")
    void.add_argument("--reason", required=True, help="why the visit is void (required)")
    void.add_argument("--volunteer", default="coordinator", help="who voids it")
    void.add_argument("--json", action="store_true", help="print JSON")

    wd = add_command(
        sub,
        "withdraw",
        "Record that the person withdraws consent for a visit (by its referral code): the "
        "centre keeps only the fact of withdrawal, and contact details are removed here.",
        _withdraw,
    )
    wd.add_argument("code", help="referral code from the person's slip")
    wd.add_argument("--volunteer", default="coordinator", help="who records the withdrawal")
    wd.add_argument("--json", action="store_true", help="print JSON")

    ls = add_command(sub, "visits", "List the visits in this kit's store, newest first.", _visits)
    ls.add_argument("--date", metavar="YYYY-MM-DD", help="only this day ('today' works too)")
    ls.add_argument("--search", metavar="TEXT", help="code, volunteer or outcome")
    ls.add_argument("--json", action="store_true", help="print JSON")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def read_json(source: str) -> Any:
    """The JSON in ``source`` (a path, or '-' for stdin); CommandError (exit 2) if bad."""
    try:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
    except FileNotFoundError:
        raise CommandError(f"no such file: {source}", 2) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {source}: {exc}", 2) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", 2
        ) from None


def _service(config: KitConfig) -> VisitService:
    from popup_kit.services import VisitService
    from popup_kit.store.db import StoreError

    try:
        return VisitService(config)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc


def _screen(args: argparse.Namespace) -> int:
    from forms import AnswerError, DefinitionError
    from popup_kit.kit_forms import kit_forms

    config = config_from(args)
    data = read_json(args.answers)
    try:
        outcome = kit_forms(config).screen(data)
    except AnswerError as exc:
        raise CommandError(f"answers: {exc}", 2) from None
    except DefinitionError as exc:
        raise CommandError(f"forms: {exc}", 2) from None
    if args.json:
        print(json.dumps(outcome.as_json()))
        return 0
    from rich.console import Console

    console = Console(highlight=False)
    console.print(f"[bold]{outcome.triage.upper()}[/]  (ruleset {outcome.ruleset_version})")
    for rule in outcome.rules:
        console.print(f"  {rule.id:<5} {rule.reason.get('en', '')}")
    if outcome.startback is not None:
        sb = outcome.startback
        console.print(
            f"  STarT Back: total {sb.total}/9, psychosocial {sb.psychosocial}/5, risk {sb.risk}"
        )
    return 0


def _visit_add(args: argparse.Namespace) -> int:
    from forms import AnswerError
    from popup_kit.domain import Contact, VisitInput, VisitRefused

    config = config_from(args)
    data = read_json(args.answers)
    if not isinstance(data, dict):
        raise CommandError("the visit file must be a JSON object", 2)
    answers = {k: v for k, v in data.items() if k not in VISIT_KEYS}
    consent = data.get("consent")
    if not isinstance(consent, dict):
        raise CommandError('consent: give {"c1": true|false, ..., "c5": true|false}', 2)
    raw_contact = data.get("contact")
    contact = None
    if raw_contact is not None:
        if not isinstance(raw_contact, dict) or set(raw_contact) - {"name", "phone"}:
            raise CommandError('contact: give {"name": "...", "phone": "..."} or leave it out', 2)
        contact = Contact(str(raw_contact.get("name", "")), str(raw_contact.get("phone", "")))
    for key in ("language", "volunteer"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise CommandError(f'{key}: give a text, e.g. "language": "en", "volunteer": "AB"', 2)
    visit = VisitInput(
        answers=answers,
        language=data["language"],
        volunteer=data["volunteer"],
        consent=consent,
        contact=contact,
        consent_method="back-filled from a paper form",
    )
    service = _service(config)
    try:
        saved = service.record_visit(visit)
    except AnswerError as exc:
        raise CommandError(f"answers: {exc}", 2) from None
    except VisitRefused as exc:
        raise CommandError(f"visit refused: {exc}", 2) from None
    finally:
        service.close()
    if args.json:
        print(json.dumps({"id": saved.visit_id, "code": saved.code, "triage": saved.triage}))
    else:
        print(f"visit {saved.visit_id} saved: code {saved.code}, outcome {saved.triage}")
    return 0


def _find(service: VisitService, code: str) -> VisitRecord:
    from printouts.codes import CodeError, extract_code

    try:
        normal = extract_code(code)
    except CodeError as exc:
        raise CommandError(f"{code!r} is not a referral code: {exc}", 2) from None
    visit = service.find_by_code(normal)
    if visit is None:
        raise CommandError(f"no visit with code {normal} in this kit's store")
    return visit


def _visit_correct(args: argparse.Namespace) -> int:
    from forms import AnswerError
    from popup_kit.domain import VisitRefused

    config = config_from(args)
    changes = read_json(args.answers)
    if not isinstance(changes, dict) or not changes:
        raise CommandError("the answers file must be a JSON object of the answers to change", 2)
    unknown = sorted(set(changes) & set(VISIT_KEYS))
    if unknown:
        raise CommandError(f"{', '.join(unknown)}: cannot be changed by a correction", 2)
    service = _service(config)
    try:
        before = _find(service, args.code)
        try:
            after = service.correct_visit(
                before.visit_id,
                {**before.answers, **changes},
                args.volunteer,
                before.contact,
                note=args.note,
            )
        except AnswerError as exc:
            raise CommandError(f"answers: {exc}", 2) from None
        except VisitRefused as exc:
            raise CommandError(f"correction refused: {exc}", 2) from None
    finally:
        service.close()
    changed = after.triage != before.triage
    slip = None
    if changed and not args.no_slip:
        from popup_kit.slips import print_visit

        slip = print_visit(config, after)
    if args.json:
        out: dict[str, Any] = {
            "code": after.code,
            "version": after.version,
            "triage": after.triage,
            "previous_triage": before.triage,
            "level_changed": changed,
        }
        if slip is not None:
            out["slip"] = {"printed": slip.printed, "message": slip.message}
        print(json.dumps(out))
        return 0
    print(f"visit {after.code} corrected: version {after.version}, outcome {after.triage}")
    if not changed:
        print(f"The outcome is unchanged ({after.triage}): the person's slip still holds.")
        return 0
    print(f"OUTCOME CHANGED: {before.triage} -> {after.triage}.")
    if after.triage == "emergency":
        from forms import outcome_text

        _title, instruction, steps = outcome_text(
            "emergency", after.language, emergency_number=config.emergency_number
        )
        print(f"EMERGENCY: contact the person now. {instruction} {' '.join(steps)}")
    print(
        f"The slip the person holds (version {before.version}) is replaced: "
        "give them the new one and take the old one back."
    )
    if slip is not None:
        print(("New slip printed: " if slip.printed else "New slip not printed: ") + slip.message)
    return 0


def _visit_void(args: argparse.Namespace) -> int:
    from popup_kit.domain import VisitRefused

    config = config_from(args)
    service = _service(config)
    try:
        before = _find(service, args.code)
        try:
            after = service.void_visit(before.visit_id, args.reason, args.volunteer)
        except VisitRefused as exc:
            raise CommandError(f"void refused: {exc}", 2) from None
    finally:
        service.close()
    if args.json:
        print(
            json.dumps(
                {
                    "code": after.code,
                    "version": after.version,
                    "voided": after.voided,
                    "previous_triage": before.triage,
                    "level_changed": True,
                }
            )
        )
        return 0
    print(
        f"visit {after.code} voided (version {after.version}; it was {before.triage}). "
        "The outcome no longer stands: the person's slip is not valid; take it back."
    )
    return 0


def _withdraw(args: argparse.Namespace) -> int:
    from popup_kit.domain import VisitRefused

    config = config_from(args)
    service = _service(config)
    try:
        visit = service.find_by_code(args.code)
        if visit is None:
            raise CommandError(f"no visit with code {args.code!r} in this kit's store")
        try:
            after = service.withdraw_consent(visit.visit_id, args.volunteer)
        except VisitRefused as exc:
            raise CommandError(str(exc)) from None
    finally:
        service.close()
    if args.json:
        print(json.dumps({"id": after.visit_id, "code": after.code, "consent": after.consent}))
    else:
        print(
            f"consent withdrawn for {after.code}; it will reach the triage server at the next sync"
        )
    return 0


def _parse_day(text: str | None, service: VisitService) -> date | None:
    if text is None:
        return None
    if text == "today":
        return service.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--date: {text!r} is not a date like 2026-11-24", 2) from None


def _visits(args: argparse.Namespace) -> int:
    config = config_from(args)
    service = _service(config)
    try:
        day = _parse_day(args.date, service)
        visits = service.list_visits(day=day, search=args.search)
    finally:
        service.close()
    if args.json:
        print(json.dumps([_listed(v) for v in visits]))
        return 0
    from rich.console import Console
    from rich.table import Table

    title = f"{len(visits)} visit(s)" + (f" on {day.isoformat()}" if day else "")
    table = Table(title=title)
    for column in ("when", "code", "outcome", "rules", "volunteer", "v", "sync"):
        table.add_column(column, no_wrap=column not in ("rules", "volunteer"))
    for v in visits:
        table.add_row(
            v.created_at.astimezone().strftime("%m-%d %H:%M"),
            v.code,
            v.triage + (" VOID" if v.voided else ""),
            ", ".join(v.rule_ids) or "-",
            v.volunteer,
            str(v.version),
            v.sync_state,
        )
    Console().print(table)
    return 0


def _listed(v: VisitRecord) -> dict[str, Any]:
    out = v.as_json()
    out.pop("answers")
    return out

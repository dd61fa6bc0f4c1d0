"""`popup-kit info`: which kit this is, where its data lives, and what it runs."""

from __future__ import annotations

import argparse
import json

from popup_kit.cli import add_command, config_from
from popup_kit.logs import log_path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "info",
        "Show this kit's id (needed to enrol it), data directory, configuration, server and "
        "ruleset version.",
        _info,
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def _info(args: argparse.Namespace) -> int:
    from popup_kit.enrolment import enrolled_with
    from popup_kit.kit_forms import kit_forms

    config = config_from(args)
    forms = kit_forms(config)
    try:
        enrolled = enrolled_with(config)
    except ValueError as exc:
        enrolled = f"damaged credentials: {exc}"
    facts = {
        "kit_id": config.kit_id,
        "data_dir": str(config.data_dir),
        "log": str(log_path(config.data_dir)),
        "config": config.source,
        "enrolled_with": enrolled,
        "slip_base_url": config.server_base_url,
        "ruleset_version": forms.ruleset_version,
        "forms_version": forms.forms_version,
        "printer": config.printer_name or None,
        "slip_format": config.slip_format,
    }
    if args.json:
        print(json.dumps(facts))
    else:
        for key, value in facts.items():
            print(f"{key.replace('_', ' '):<16} {value if value is not None else '-'}")
    return 0

from __future__ import annotations

import argparse


def run_tui(args: argparse.Namespace) -> int:
    from popup_kit.cli import config_from
    from popup_kit.ui.app import BoothApp

    app = BoothApp(config_from(args))
    app.run()
    return app.return_code or 0

"""Child process for bench/startup.py: start one app and report its first drawn frame.

Writes ``FRAME`` on stdout after the first refresh that follows mount, then exits.
The parent times spawn → that line, so interpreter start and imports count.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _probe(app_cls: type[Any], out: Any) -> type[Any]:
    class Probe(app_cls):  # type: ignore[misc, valid-type]
        def on_mount(self) -> None:
            # the app's own mount runs first: its first screen is part of the frame
            mount = getattr(super(), "on_mount", None)
            if mount is not None:
                mount()
            self.call_after_refresh(self._first_frame)

        def _first_frame(self) -> None:
            out.write("FRAME\n")
            out.flush()
            self.exit()

    return Probe


def main() -> None:
    which = sys.argv[1]
    out = os.fdopen(os.dup(1), "w")
    if which == "bare":
        from textual.app import App, ComposeResult
        from textual.widgets import Footer, Header, Static

        class Bare(App[None]):
            def compose(self) -> ComposeResult:
                yield Header()
                yield Static("Hello")
                yield Footer()

        _probe(Bare, out)().run(headless=True)
    else:
        from popup_kit.config import load_config
        from popup_kit.ui.app import BoothApp

        _probe(BoothApp, out)(load_config()).run(headless=True)


if __name__ == "__main__":
    main()

"""Child process for bench/startup.py: start one app and report its first drawn frame.

Writes ``FRAME`` on stdout after the first refresh that follows mount. The parent times
spawn → that line, so interpreter start and imports count. The bare app then exits; the
booth goes on as at start of day: when it asks for the passphrase, the one in
``BENCH_PASSPHRASE`` is typed and submitted, and ``OPEN <seconds>`` is written once the
store is open (passphrase submitted → the backend's ready message).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

# run as a script, this folder comes first on the path, and bench/sync.py would shadow
# the kit's own ``sync`` package
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]


def _probe(app_cls: type[Any], out: Any, *, then_exit: bool) -> type[Any]:
    # Textual calls a handler of every class in the MRO, the subclass's first: these
    # handlers must not call super(), or the app's own would run twice.
    class Probe(app_cls):  # type: ignore[misc, valid-type]
        def on_mount(self) -> None:
            # handled once the app's own mount has pushed its first screen
            self.call_after_refresh(self._first_frame)

        def _first_frame(self) -> None:
            out.write("FRAME\n")
            out.flush()
            if then_exit:
                self.exit()

    return Probe


def _booth(out: Any) -> Any:
    from textual.widgets import Input

    from popup_kit.config import load_config
    from popup_kit.ui.app import BoothApp

    class Booth(_probe(BoothApp, out, then_exit=False)):  # type: ignore[misc]
        given = 0.0

        def on_store_locked(self, message: Any) -> None:
            if message.first_run or "wrong" in message.error:  # not the start of day
                out.write(f"LOCKED first_run={message.first_run} {message.error}\n")
                out.flush()
                self.exit()
                return
            self.call_after_refresh(self._type_passphrase)

        async def _type_passphrase(self) -> None:
            fields = self.screen.query("#first").results(Input)
            field = next(fields, None)
            if field is None:  # the passphrase screen is not composed yet
                self.call_after_refresh(self._type_passphrase)
                return
            field.value = os.environ["BENCH_PASSPHRASE"]
            self.given = time.perf_counter()
            await field.action_submit()

        def on_backend_ready(self, message: Any) -> None:
            out.write(f"OPEN {time.perf_counter() - self.given:.6f}\n")
            out.flush()
            self.call_later(self.exit)

        def on_backend_failed(self, message: Any) -> None:
            out.write(f"FAILED {message.error}\n")
            out.flush()
            self.exit()

    return Booth(load_config())


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

        _probe(Bare, out, then_exit=True)().run(headless=True)
    else:
        _booth(out).run(headless=True)


if __name__ == "__main__":
    main()

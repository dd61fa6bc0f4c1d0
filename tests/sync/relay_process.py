"""One sync run of a kit in a process of its own, for the kill -9 tests.

Usage: python -m tests.sync.relay_process KIT_DB DATA_DIR BATCH_SIZE
Prints ``ready`` once started, ``progress DONE TOTAL`` as it goes and ``done SUMMARY``
at the end; exits with the summary's exit code.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from sync.client import sync_outbox
from sync.protocol import KitCredentials
from tests.sync.kit_side import FAST, kit_engine


def main(argv: list[str]) -> int:
    db, data_dir, batch_size = Path(argv[1]), Path(argv[2]), int(argv[3])
    credentials = KitCredentials.load(data_dir)
    if credentials is None:
        print(f"no credentials in {data_dir}", file=sys.stderr)
        return 2
    engine = kit_engine(db)
    print("ready", flush=True)
    summary = sync_outbox(
        engine,
        credentials,
        dataclasses.replace(FAST, batch_size=batch_size),
        progress=lambda done, total: print(f"progress {done} {total}", flush=True),
    )
    print("done", json.dumps(summary.as_json()), flush=True)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Time from process start to the first drawn frame: the booth app vs a bare Textual app.

Both run in this same invocation, alternating, so machine noise hits both alike.
Usage: uv run python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 1.6


def first_frame_seconds(which: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_first_frame.py"), which],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.wait(timeout=30)
    if line.strip() != "FRAME":
        raise SystemExit(f"{which}: no frame reported (exit {proc.returncode})")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, POPUP_KIT_DATA_DIR=data_dir, PYTHONDONTWRITEBYTECODE="")
        env.pop("POPUP_KIT_CONFIG", None)
        for which in ("bare", "kit"):  # warm the OS file cache and bytecode
            first_frame_seconds(which, env)
        times: dict[str, list[float]] = {"bare": [], "kit": []}
        for _ in range(args.runs):
            for which in ("bare", "kit"):
                times[which].append(first_frame_seconds(which, env))
    bare = statistics.median(times["bare"])
    kit = statistics.median(times["kit"])
    ratio = kit / bare
    print(f"runs: {args.runs} each, alternating")
    print(f"bare Textual app, first frame: median {bare * 1000:.0f} ms")
    print(f"popup-kit, first frame:        median {kit * 1000:.0f} ms")
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"ratio kit/bare: {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()

"""Run every invalid invocation of genaug.testing.invalid and print a table: exit status and stderr line count.

Usage: python scripts/invalid_invocations.py [--out DIR]   (the figures of BENCHMARKS.md's reliability table)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

from genaug.cli import main as genaug_main
from genaug.testing.invalid import invalid_invocations


def run(argv: list[str]) -> tuple[int, str]:
    """Exit status and stderr of one in-process invocation."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = genaug_main(argv)
        except SystemExit as e:
            rc = int(e.code or 0)
    return rc, err.getvalue()


def main() -> None:
    """Print one row per invocation and the totals."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    root = Path(a.out or tempfile.mkdtemp(prefix="genaug-invalid-"))
    rows = invalid_invocations(root)
    good = 0
    print(f"| {'invocation':48s} | exit | lines | message |")
    print(f"|{'-' * 50}|------|-------|---------|")
    for label, argv in rows:
        rc, err = run(argv)
        lines = err.count("\n")
        ok = rc == 2 and lines == 1 and err.startswith("genaug: error: ")
        good += ok
        print(f"| {label:48s} | {rc:4d} | {lines:5d} | {err.strip()[:90]} |")
    print(f"\n{good} of {len(rows)} invalid invocations end in one line and exit status 2")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Rewrite the README's configuration table from the services' config classes (`agentgpt config --markdown`)."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from apps.cli.main import main as cli

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config:start -->", "<!-- config:end -->"


def main() -> int:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli(["config", "--markdown"])
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{out.getvalue().strip()}\n{END}{tail}")
    print("README configuration table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

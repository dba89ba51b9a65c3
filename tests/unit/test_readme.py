"""The README's configuration table is what `agentgpt config --markdown` prints."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from apps.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_is_current() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["config", "--markdown"]) == 0
    text = README.read_text()
    section = text.split("<!-- config:start -->")[1].split("<!-- config:end -->")[0]
    assert section.strip() == out.getvalue().strip(), "README config table is stale: run `make docs`"

"""Shared test set-up. Real-backend fixtures (anvil, IPFS node, PostgreSQL, ...) live one module per
backend in tests/fixtures/ and are loaded here as plugins, so every test tier can use them."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)

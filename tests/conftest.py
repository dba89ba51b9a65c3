"""Shared test set-up. Real-backend fixtures (anvil, IPFS node, PostgreSQL, ...) live one module per
backend in tests/fixtures/ and are loaded here as plugins, so every test tier can use them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)

# `make test` spreads the files over several workers (pytest-xdist, --dist loadfile: a file's tests stay
# on one worker, so module fixtures such as a running stack are started once). Workers take files in
# collection order, so the slowest tiers are collected first: the long files start at once and the many
# short ones fill the gaps, instead of one long file starting last and running alone.
_TIER_ORDER = ("containers", "e2e", "integration", "contracts", "component", "deploy", "unit")


def _tier(item: pytest.Item) -> int:
    parts = Path(str(item.path)).relative_to(Path(__file__).parent).parts
    return _TIER_ORDER.index(parts[0]) if parts and parts[0] in _TIER_ORDER else len(_TIER_ORDER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_tier)  # stable: the order within a tier (and within a file) is kept

"""ofac_filter: refuse any plan touching an address on the sanctions list shipped as data.

The list is one address a line (agentgpt/data/ofac/sanctioned_addresses_ETH.txt by default, replaceable
with AGENTGPT_OFAC_LIST); its source and date are read from the README next to it and quoted in every
refusal, so an operator can see which list blocked what. Addresses compare case-insensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path

from services.executor.decorators import DecoratorContext, DecoratorDeps
from services.executor.plan import Plan, PlanRejected

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def default_list_path() -> Path:
    return Path(str(resources.files("agentgpt").joinpath("data", "ofac", "sanctioned_addresses_ETH.txt")))


@dataclass(frozen=True)
class SanctionsList:
    addresses: frozenset[str]  # lower-case
    source: str
    date: str

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and address.lower() in self.addresses


@lru_cache(maxsize=8)
def load_sanctions_list(path: str) -> SanctionsList:
    p = Path(path) if path else default_list_path()
    addresses = set()
    for n, line in enumerate(p.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _ADDRESS.match(line):
            raise ValueError(f"{p}:{n}: not an address: {line[:60]!r}")
        addresses.add(line.lower())
    source, date = str(p), datetime.fromtimestamp(p.stat().st_mtime, UTC).date().isoformat()
    readme = p.parent / "README.md"
    if readme.is_file():
        text = readme.read_text()
        if m := re.search(r"repository\s+(\S+)", text):
            source = f"OFAC SDN list via {m.group(1)} ({p.name})"
        if m := re.search(r"read on (\d{4}-\d{2}-\d{2})", text):
            date = m.group(1)
    return SanctionsList(frozenset(addresses), source, date)


class OfacFilter:
    def __init__(self, name: str, sanctions: SanctionsList) -> None:
        self.name = name
        self.sanctions = sanctions

    async def apply(self, plan: Plan, ctx: DecoratorContext) -> Plan:
        for address in plan.addresses():
            if address in self.sanctions:
                raise PlanRejected(
                    f"the plan touches {address}, which is on the sanctions list "
                    f"(source: {self.sanctions.source}; date: {self.sanctions.date})",
                    by=self.name,
                )
        return plan


def make_ofac_filter(name: str, deps: DecoratorDeps) -> OfacFilter:
    return OfacFilter(name, load_sanctions_list(deps.ofac_list))

"""Compliance and fee decorators: plugins that check or transform a task's plan before execution.

A decorator is named in the session spec ("kyc_tier4", "ofac_filter", "gas_optimizer_v3"); the
registry resolves a name to a factory by its base name (trailing tier/version digits and "_v" are the
factory's parameter), from the built-ins and from the `agentgpt.decorators` entry-point group, so
third-party packages add decorators without touching this code:

    [project.entry-points."agentgpt.decorators"]
    my_check = "my_pkg.decorators:make_my_check"   # factory(name: str, deps: DecoratorDeps) -> Decorator
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from services.executor.plan import Plan

log = logging.getLogger("agentgpt.executor.decorators")

ENTRY_POINT_GROUP = "agentgpt.decorators"


class FeeSource(Protocol):
    """EIP-1559 fee data of a chain (eth_feeHistory)."""

    async def fee_history(self, chain: str, blocks: int, percentile: float) -> tuple[list[int], list[int]]:
        """(base fees of the last `blocks` blocks plus the next block's, priority-fee rewards at `percentile`)."""
        ...


@dataclass(frozen=True)
class DecoratorContext:
    """What a decorator may know about the session whose plan it checks."""

    session_id: str
    owner: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    chains: tuple[str, ...] = ()
    now: float = 0.0  # unix seconds (passed in, so decorators stay deterministic under test)


class Decorator(Protocol):
    name: str

    async def apply(self, plan: Plan, ctx: DecoratorContext) -> Plan:
        """Return the plan (possibly transformed); raise PlanRejected or PlanDeferred to stop it."""
        ...


@dataclass(frozen=True)
class DecoratorDeps:
    """What decorator factories are built from (config + live dependencies)."""

    ofac_list: str = ""  # path of the sanctions list; "" = the list shipped in agentgpt/data/ofac
    kyc_issuers: tuple[str, ...] = ()  # addresses whose KYC attestations are trusted
    fee_source: FeeSource | None = None
    gas_retry_after: float = 12.0  # seconds before a deferred (fee too high) task is retried


DecoratorFactory = Callable[[str, DecoratorDeps], Decorator]


class UnknownDecorator(LookupError):
    pass


_SUFFIX = re.compile(r"^(?P<base>.*?)(?:_v)?(?P<n>\d+)$")


def base_name(name: str) -> tuple[str, int | None]:
    """'kyc_tier4' -> ('kyc_tier', 4); 'gas_optimizer_v3' -> ('gas_optimizer', 3); 'ofac_filter' -> (.., None)."""
    m = _SUFFIX.match(name)
    if not m or not m.group("base"):
        return name, None
    return m.group("base").rstrip("_"), int(m.group("n"))


class DecoratorRegistry:
    """Decorator names -> factories: built-ins first, then the entry-point group (which may override)."""

    def __init__(self, deps: DecoratorDeps, *, load_entry_points: bool = True) -> None:
        from services.executor.decorators.gas import make_gas_optimizer
        from services.executor.decorators.kyc import make_kyc_tier
        from services.executor.decorators.ofac import make_ofac_filter

        self.deps = deps
        self._factories: dict[str, DecoratorFactory] = {
            "kyc_tier": make_kyc_tier,
            "ofac_filter": make_ofac_filter,
            "gas_optimizer": make_gas_optimizer,
        }
        if load_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    self._factories[ep.name] = ep.load()
                except Exception:
                    # A broken plugin must not take the executor down; sessions naming it are refused.
                    log.exception("cannot load decorator entry point %s = %s", ep.name, ep.value)

    def register(self, base: str, factory: DecoratorFactory) -> None:
        self._factories[base] = factory

    @property
    def names(self) -> list[str]:
        return sorted(self._factories)

    def _factory(self, name: str) -> DecoratorFactory:
        if name in self._factories:
            return self._factories[name]
        base, _ = base_name(name)
        if base in self._factories:
            return self._factories[base]
        raise UnknownDecorator(f"unknown decorator {name!r}; known: {', '.join(self.names)}")

    def create(self, name: str) -> Decorator:
        """An instance for `name`; UnknownDecorator (or ValueError for a bad parameter) otherwise."""
        return self._factory(name)(name, self.deps)

    def known(self, name: str) -> bool:
        try:
            self.create(name)
        except (UnknownDecorator, ValueError):
            return False
        return True

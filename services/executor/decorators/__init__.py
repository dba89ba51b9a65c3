"""Compliance and fee decorators: plugins that check or transform a task's plan before execution.

A decorator is named in the session spec ("kyc_tier4", "ofac_filter", "gas_optimizer_v3"). Which names
exist is declared once, in the library (agentgpt.decorators: the built-in families with their allowed
tiers and versions, plus the `agentgpt.decorators` entry-point group), and the session service refuses
any other name; this registry resolves a supported name to its factory, so third-party packages add
decorators without touching this code:

    [project.entry-points."agentgpt.decorators"]
    my_check = "my_pkg.decorators:make_my_check"   # factory(name: str, deps: DecoratorDeps) -> Decorator

A name this executor cannot provide (unknown here, or a plug-in that fails to load) is never skipped:
`create` raises UnknownDecorator, and a session's context stands in a `Refusing` decorator for it, so
every task of that session is refused (REFUSED, with the reason) until the decorator is available or
swapped out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentgpt.decorators import BUNDLES, DecoratorSet, expand, plugin_entry_points, supported_decorators
from agentgpt.decorators import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from agentgpt.decorators import UnknownDecorator as UnknownDecorator
from agentgpt.zk.batch import Groth16Worker
from services.executor.plan import Plan, PlanRejected

log = logging.getLogger("agentgpt.executor.decorators")


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
    zk_worker: Groth16Worker | None = None  # proves zk_batch_prover checkpoints (None: cannot)


DecoratorFactory = Callable[[str, DecoratorDeps], Decorator]


_SUFFIX = re.compile(r"^(?P<base>.*?)(?:_v)?(?P<n>\d+)$")


def base_name(name: str) -> tuple[str, int | None]:
    """'kyc_tier4' -> ('kyc_tier', 4); 'gas_optimizer_v3' -> ('gas_optimizer', 3); 'ofac_filter' -> (.., None)."""
    m = _SUFFIX.match(name)
    if not m or not m.group("base"):
        return name, None
    return m.group("base").rstrip("_"), int(m.group("n"))


class Refusing:
    """Stands in for a decorator this executor cannot provide: refuses every plan, so a compliance check
    named in the spec is never silently skipped."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    async def apply(self, plan: Plan, ctx: DecoratorContext) -> Plan:
        raise PlanRejected(
            f"{self.reason}; the session's tasks are refused until this executor has the decorator "
            "or a swap_context task replaces it",
            by=self.name,
        )


class DecoratorRegistry:
    """Supported decorator names (agentgpt.decorators) -> factories: the built-ins, replaced or extended
    by the `agentgpt.decorators` entry points."""

    def __init__(
        self,
        deps: DecoratorDeps,
        *,
        load_entry_points: bool = True,
        supported: DecoratorSet | None = None,
    ) -> None:
        from services.executor.decorators.gas import make_gas_optimizer
        from services.executor.decorators.kyc import make_kyc_tier
        from services.executor.decorators.ofac import make_ofac_filter
        from services.executor.decorators.zk import make_zk_batch_prover

        self.deps = deps
        # without entry points: the built-in names only (what tests and the benchmark use)
        self.supported = supported or (supported_decorators() if load_entry_points else DecoratorSet())
        self._factories: dict[str, DecoratorFactory] = {
            "kyc_tier": make_kyc_tier,
            "ofac_filter": make_ofac_filter,
            "gas_optimizer": make_gas_optimizer,
            "zk_batch_prover": make_zk_batch_prover,
            **{base: self._make_bundle for base in BUNDLES},
        }
        self._broken: dict[str, str] = {}
        if load_entry_points:
            for name, ep in plugin_entry_points().items():
                try:
                    self._factories[name] = ep.load()
                except Exception as exc:
                    # A broken plugin must not take the executor down; sessions naming it are refused.
                    log.exception("cannot load decorator entry point %s = %s", ep.name, ep.value)
                    self._broken[name] = f"{type(exc).__name__}: {exc}"

    def _make_bundle(self, name: str, deps: DecoratorDeps) -> Decorator:
        """A bundle (agentgpt.decorators.BUNDLES): its parts, each built as if named on its own."""
        from services.executor.decorators.bundle import Bundle

        return Bundle(name, [self.create(part) for part in expand(name)])

    def register(self, name: str, factory: DecoratorFactory) -> None:
        """Add (or replace) a factory in this registry only: for tests and embedding. A deployment's
        plug-ins are entry points, which the session service knows about too."""
        self.supported = self.supported.with_plugins(name)
        self._factories[name] = factory

    @property
    def names(self) -> list[str]:
        """Every decorator name this registry provides."""
        return list(self.supported.names())

    def _factory(self, name: str) -> DecoratorFactory:
        resolved = self.supported.resolve(name)  # UnknownDecorator, with what is supported
        factory = self._factories.get(resolved.implementation)
        if factory is None:
            why = self._broken.get(resolved.implementation, "it is not installed on this executor")
            raise UnknownDecorator(name, f"decorator {name!r} is supported but cannot be loaded here: {why}")
        return factory

    def create(self, name: str) -> Decorator:
        """An instance for `name`; UnknownDecorator (or ValueError for a bad parameter) otherwise."""
        return self._factory(name)(name, self.deps)

    def create_or_refuse(self, name: str) -> Decorator:
        """An instance for `name`, or a Refusing stand-in saying why there is none."""
        try:
            return self.create(name)
        except Exception as exc:  # unknown, a bad parameter, or its factory failed (e.g. an unreadable list)
            reason = str(exc) if isinstance(exc, UnknownDecorator) else f"{name}: {type(exc).__name__}: {exc}"
            log.error(
                "decorator %r is unavailable; tasks of sessions naming it are refused: %s", name, reason
            )
            return Refusing(name, reason)

    def known(self, name: str) -> bool:
        try:
            self.create(name)
        except (UnknownDecorator, ValueError):
            return False
        return True

"""SessionContext: a session's model adapters, payment rail and decorators, versioned as context epochs.

The seed's "pluggable contexts": any of the three parts can be swapped mid-session. A swap is asked
for with a `swap_context` task (so it is ordered with the other tasks and durable in the session's
queue), produces a new ContextEpoch (epoch + 1, what changed, from which task on) and is recorded in
the task result and the hash-chained log; the plans before and after it are attributable to exactly
one context.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from services.executor.budget import PaymentRail
from services.executor.decorators import Decorator, DecoratorContext, DecoratorRegistry, UnknownDecorator
from services.executor.plan import Plan, PlanRejected, TaskRequest
from services.executor.planners.base import Planner, SessionView

#: Which model role plans which task kind; anything else uses "execution" (or the only model given).
ROLE_OF_KIND = {"analyze_market": "risk"}
DEFAULT_ROLE = "execution"


@dataclass(frozen=True)
class ContextEpoch:
    epoch: int
    models: Mapping[str, str]  # role -> model name as the spec/swap asked
    adapters: Mapping[str, str]  # role -> adapter actually used (e.g. "builtin", "openai:gpt-4o")
    payment_rail: str
    decorators: tuple[str, ...]
    since_seq: int  # first task planned in this epoch
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "models": dict(self.models),
            "adapters": dict(self.adapters),
            "payment_rail": self.payment_rail,
            "decorators": list(self.decorators),
            "since_seq": self.since_seq,
            "reason": self.reason,
        }


PlannerFactory = Callable[[str], Planner]
RailFactory = Callable[[str], PaymentRail]


@dataclass
class SessionContext:
    session_id: str
    epoch: ContextEpoch
    planners: dict[str, Planner]
    rail: PaymentRail
    decorators: list[Decorator]
    owner: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    chains: tuple[str, ...] = ()
    history: list[ContextEpoch] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    def planner_for(self, task: TaskRequest) -> Planner:
        role = str(task.args.get("role") or ROLE_OF_KIND.get(task.kind, DEFAULT_ROLE))
        if role in self.planners:
            return self.planners[role]
        if DEFAULT_ROLE in self.planners:
            return self.planners[DEFAULT_ROLE]
        return next(iter(self.planners.values()))

    async def plan(self, task: TaskRequest, view: SessionView) -> Plan:
        """Plan with the model for the task's role, then run every decorator in spec order."""
        plan = await self.planner_for(task).plan(task, view)
        ctx = DecoratorContext(self.session_id, self.owner, self.params, self.chains, self.clock())
        checked: list[str] = []
        for decorator in self.decorators:
            plan = await decorator.apply(plan, ctx)
            checked.append(decorator.name)
        return replace(plan, checked_by=tuple(checked))


class ContextBuilder:
    """Builds a session's first context from its spec and applies swaps."""

    def __init__(
        self,
        registry: DecoratorRegistry,
        planners: PlannerFactory,
        rails: RailFactory,
        default_rail: str = "ledger",
    ) -> None:
        self.registry = registry
        self.planners = planners
        self.rails = rails
        self.default_rail = default_rail

    def _decorators(self, names: Sequence[str]) -> list[Decorator]:
        """For a swap: PlanRejected (the swap is refused and changes nothing) if a name is not a supported
        decorator. A supported one this executor cannot build is a refusing stand-in rather than an
        error: a swap that succeeded on another executor is re-applied here and must not be dropped."""
        out = []
        for name in names:
            try:
                self.registry.supported.resolve(name)
            except UnknownDecorator as exc:
                raise PlanRejected(str(exc), by="context") from None
            out.append(self.registry.create_or_refuse(name))
        return out

    def build(
        self,
        session_id: str,
        *,
        models: Mapping[str, str],
        decorators: Sequence[str],
        payment_rail: str = "",
        owner: str = "",
        params: Mapping[str, Any] | None = None,
        chains: Sequence[str] = (),
        epoch: int = 1,
        since_seq: int = 1,
    ) -> SessionContext:
        models = dict(models) or {DEFAULT_ROLE: "builtin"}
        planners = {role: self.planners(model) for role, model in models.items()}
        rail_name = payment_rail or self.default_rail
        ctx_epoch = ContextEpoch(
            epoch,
            models,
            {r: p.name for r, p in planners.items()},
            rail_name,
            tuple(decorators),
            since_seq,
            "session start",
        )
        return SessionContext(
            session_id,
            ctx_epoch,
            planners,
            self.rails(rail_name),
            # The spec's decorators are the session's compliance: one this executor cannot provide is
            # a stand-in refusing every plan, never left out (and never a crashed session runner).
            [self.registry.create_or_refuse(name) for name in decorators],
            owner,
            dict(params or {}),
            tuple(chains),
            [ctx_epoch],
        )

    def swap(self, ctx: SessionContext, change: Mapping[str, Any], at_seq: int) -> ContextEpoch:
        """Apply a swap_context task's args: {models?: {role: name}, payment_rail?, decorators?: [...]}.

        Raises PlanRejected (and changes nothing) if any part is unknown."""
        unknown = set(change) - {"models", "payment_rail", "decorators", "reason"}
        if unknown:
            raise PlanRejected(f"swap_context: unknown keys {sorted(unknown)}", by="context")
        if not ({"models", "payment_rail", "decorators"} & set(change)):
            raise PlanRejected("swap_context needs models, payment_rail or decorators", by="context")
        models = dict(ctx.epoch.models)
        planners = dict(ctx.planners)
        if "models" in change:
            if not isinstance(change["models"], dict) or not change["models"]:
                raise PlanRejected("swap_context.models must map role -> model name", by="context")
            for role, name in change["models"].items():
                planners[str(role)] = self.planners(str(name))
                models[str(role)] = str(name)
        decorator_names = ctx.epoch.decorators
        decorators = ctx.decorators
        if "decorators" in change:
            if not isinstance(change["decorators"], list):
                raise PlanRejected("swap_context.decorators must be a list of names", by="context")
            decorator_names = tuple(str(d) for d in change["decorators"])
            decorators = self._decorators(decorator_names)
        rail_name, rail = ctx.epoch.payment_rail, ctx.rail
        if "payment_rail" in change:
            rail_name = str(change["payment_rail"])
            try:
                rail = self.rails(rail_name)
            except KeyError:
                raise PlanRejected(f"unknown payment rail {rail_name!r}", by="context") from None
        new = ContextEpoch(
            ctx.epoch.epoch + 1,
            models,
            {r: p.name for r, p in planners.items()},
            rail_name,
            decorator_names,
            at_seq,
            str(change.get("reason", "swap_context task")),
        )
        ctx.planners, ctx.decorators, ctx.rail, ctx.epoch = planners, decorators, rail, new
        ctx.history.append(new)
        return new

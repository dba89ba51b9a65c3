"""A decorator bundle (agentgpt.decorators.BUNDLES, e.g. compliance_tier2 = kyc_tier2 + ofac_filter):
its parts applied in order under the bundle's name, so the first part that refuses a plan refuses it,
and the refusal says which part (`by` is "compliance_tier2/ofac_filter")."""

from __future__ import annotations

from collections.abc import Sequence

from services.executor.decorators import Decorator, DecoratorContext
from services.executor.plan import Plan, PlanRejected


class Bundle:
    def __init__(self, name: str, parts: Sequence[Decorator]) -> None:
        self.name = name
        self.parts = tuple(parts)

    async def apply(self, plan: Plan, ctx: DecoratorContext) -> Plan:
        for part in self.parts:
            try:
                plan = await part.apply(plan, ctx)
            except PlanRejected as exc:
                raise PlanRejected(exc.reason, by=f"{self.name}/{part.name}") from None
        return plan

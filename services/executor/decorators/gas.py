"""gas_optimizer_v<N>: EIP-1559 fees from eth_feeHistory; defers a plan while the base fee is over the cap.

The session's cap is `params.max_base_fee_gwei` (or `params.max_base_fee_wei`); without one the plan
is never deferred. Versions differ in how much history they read and how eager the tip is:
v1 = 5 blocks at the 50th percentile, v2 = 10 at the 40th, v3 = 20 at the 25th (cheapest, patient).
maxFeePerGas = 2 x next base fee + tip, so a transaction survives a few full blocks without replacement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from services.executor.decorators import DecoratorContext, DecoratorDeps, FeeSource, base_name
from services.executor.plan import Action, Fees, Plan, PlanDeferred

GWEI = 10**9
VERSIONS: dict[int, tuple[int, float]] = {1: (5, 50.0), 2: (10, 40.0), 3: (20, 25.0)}
MIN_TIP = 10**6  # 0.001 gwei: some nodes refuse a zero tip


def base_fee_cap(params: Mapping[str, Any]) -> int | None:
    if "max_base_fee_wei" in params:
        return int(params["max_base_fee_wei"])
    if "max_base_fee_gwei" in params:
        return int(float(params["max_base_fee_gwei"]) * GWEI)
    return None


def _chain_of(actions: tuple[Action, ...], ctx: DecoratorContext) -> str:
    for a in actions:
        if a.on_chain and a.params.get("chain"):
            return str(a.params["chain"])
    return ctx.chains[0] if ctx.chains else ""


class GasOptimizer:
    def __init__(
        self, name: str, blocks: int, percentile: float, source: FeeSource | None, retry_after: float
    ) -> None:
        self.name = name
        self.blocks = blocks
        self.percentile = percentile
        self.source = source
        self.retry_after = retry_after

    async def apply(self, plan: Plan, ctx: DecoratorContext) -> Plan:
        if not plan.on_chain:
            return plan
        if self.source is None:
            raise PlanDeferred(
                "no chain connection to read eth_feeHistory from", by=self.name, retry_after=self.retry_after
            )
        base_fees, rewards = await self.source.fee_history(
            _chain_of(plan.actions, ctx), self.blocks, self.percentile
        )
        next_base = base_fees[-1]
        cap = base_fee_cap(ctx.params)
        if cap is not None and next_base > cap:
            raise PlanDeferred(
                f"base fee {next_base / GWEI:.3f} gwei is over the session's cap of {cap / GWEI:.3f} gwei",
                by=self.name,
                retry_after=self.retry_after,
            )
        nonzero = sorted(r for r in rewards if r > 0)
        tip = max(MIN_TIP, nonzero[len(nonzero) // 2] if nonzero else 0)
        return replace(
            plan,
            fees=Fees(max_fee_per_gas=2 * next_base + tip, max_priority_fee_per_gas=tip, base_fee=next_base),
        )


def make_gas_optimizer(name: str, deps: DecoratorDeps) -> GasOptimizer:
    _, version = base_name(name)
    if version not in VERSIONS:
        raise ValueError(f"{name}: known versions are {', '.join(f'gas_optimizer_v{v}' for v in VERSIONS)}")
    blocks, percentile = VERSIONS[version]
    return GasOptimizer(name, blocks, percentile, deps.fee_source, deps.gas_retry_after)

"""kyc_tier<N>: on-chain actions need the session owner's KYC attestation of tier >= N from a trusted issuer.

The attestation sits in the session params as `kyc_attestation` = {subject, tier, expires, issuer,
signature}: an EIP-712 signature by the issuer over KycAttestation(subject, tier, expires), in the
format of agentgpt.kyc (shared with the issuers that sign it). Issuers are configured
(AGENTGPT_KYC_ISSUERS); the seed's Polygon ID credential is realised as this signed claim. A verified attestation is cached per (session, signature) so the check costs one lookup per task.
"""

from __future__ import annotations

from typing import Any

from agentgpt.decorators import KYC_TIERS
from agentgpt.kyc import attestation_signer
from services.executor.decorators import DecoratorContext, DecoratorDeps, base_name
from services.executor.plan import Plan, PlanRejected


class KycTier:
    def __init__(self, name: str, tier: int, issuers: tuple[str, ...]) -> None:
        self.name = name
        self.tier = tier
        self.issuers = frozenset(a.lower() for a in issuers)
        self._verified: dict[tuple[str, str], int] = {}  # (session, attestation) -> expires

    def _verify(self, att: Any, ctx: DecoratorContext) -> int:
        if not isinstance(att, dict):
            raise PlanRejected(
                f"{self.name} requires params.kyc_attestation (tier >= {self.tier})", by=self.name
            )
        try:
            subject, tier, expires = str(att["subject"]), int(att["tier"]), int(att["expires"])
            signature = bytes.fromhex(str(att["signature"]).removeprefix("0x"))
            signer = attestation_signer(subject, tier, expires, signature)
        except Exception as exc:
            raise PlanRejected(
                f"kyc_attestation is malformed: {type(exc).__name__}: {exc}", by=self.name
            ) from None
        if signer.lower() not in self.issuers:
            raise PlanRejected(f"kyc_attestation is signed by {signer}, not a trusted issuer", by=self.name)
        if ctx.owner and subject.lower() != ctx.owner.lower():
            raise PlanRejected(
                f"kyc_attestation is for {subject}, not the session owner {ctx.owner}", by=self.name
            )
        if tier < self.tier:
            raise PlanRejected(
                f"kyc_attestation has tier {tier}; this session requires tier {self.tier}", by=self.name
            )
        return expires

    async def apply(self, plan: Plan, ctx: DecoratorContext) -> Plan:
        if not plan.on_chain:
            return plan  # the gate is on moving value; reading markets and bookkeeping need no KYC
        att = ctx.params.get("kyc_attestation")
        # Keyed on the whole attestation: a changed tier with the old signature must be re-verified.
        key = (ctx.session_id, repr(sorted(att.items())) if isinstance(att, dict) else "")
        expires = self._verified.get(key)
        if expires is None:
            expires = self._verify(att, ctx)
            self._verified[key] = expires
        if ctx.now >= expires:
            raise PlanRejected(f"kyc_attestation expired at {expires}", by=self.name)
        return plan


def make_kyc_tier(name: str, deps: DecoratorDeps) -> KycTier:
    _, tier = base_name(name)
    if tier is None or tier not in KYC_TIERS:
        raise ValueError(f"{name}: the supported tiers are {', '.join(f'kyc_tier{t}' for t in KYC_TIERS)}")
    return KycTier(name, tier, deps.kyc_issuers)

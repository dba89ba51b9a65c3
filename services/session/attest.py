"""The session service's check of an executor's DCAP attestation, for sessions whose spec requires one
(docs/attestation.md): at activation the owner hands over the executor's quote and collateral, verified
here against the spec's policy with the service's AGENTGPT_ATTESTATION_* settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentgpt.attestation import Attestation, AttestationError, Policy, Verifier
from agentgpt.errors import FailedPrecondition


@dataclass(frozen=True)
class AttestationCheck:
    verifier: Verifier = field(default_factory=Verifier)

    def require(self, policy: Policy, executor: str, quote: bytes, collateral: str) -> Attestation:
        """The executor's verified attestation satisfying `policy`; FailedPrecondition naming the
        requirement and what is wrong with the executor's attestation otherwise."""
        need = (
            f"the session's spec requires an attested executor (TCB {', '.join(sorted(policy.tcb))}"
            + (f", one of {len(policy.measurements)} measurements" if policy.measurements else "")
            + ")"
        )
        if not quote:
            raise FailedPrecondition(
                f"executor {executor}: {need}; not attested (no quote given: pass the executor's "
                "attestation_quote and attestation_collateral_json from its GetExecutorStatus)"
            )
        try:
            return self.verifier.check(quote, collateral, executor, policy)
        except AttestationError as exc:
            raise FailedPrecondition(f"executor {executor}: {need}; {exc}") from None

"""The session service's check of an executor's DCAP attestation, for sessions whose spec requires one
(docs/attestation.md): at activation the owner hands over the executor's quote and collateral, verified
here against the spec's policy at the configured time and root CA."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from agentgpt.attestation import Attestation, AttestationError, Policy, verify
from agentgpt.errors import FailedPrecondition
from agentgpt.runtime.config import ConfigError


@dataclass(frozen=True)
class AttestationCheck:
    at_time: int = 0  # Unix time of verification; 0: now
    root_ca_der: bytes | None = None  # None: Intel's SGX root CA (dcap-qvl's)
    require_binding: bool = True

    @staticmethod
    def of(at_time: int, root_ca_file: str, require_binding: bool) -> AttestationCheck:
        root: bytes | None = None
        if root_ca_file:
            try:
                root = Path(root_ca_file).read_bytes()
            except OSError as exc:
                raise ConfigError(f"AGENTGPT_ATTESTATION_ROOT_CA_FILE: {exc}") from None
        return AttestationCheck(at_time, root, require_binding)

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
        now = self.at_time or int(time.time())
        try:
            att = verify(quote, collateral, now, policy, address=executor, root_ca_der=self.root_ca_der)
        except AttestationError as exc:
            raise FailedPrecondition(f"executor {executor}: {need}; {exc}") from None
        if self.require_binding and not att.bound_key:
            raise FailedPrecondition(
                f"executor {executor}: {need}; its quote's report data does not bind its address "
                "(sha256 binding, docs/attestation.md)"
            )
        return att

"""Executor attestation: Intel DCAP quotes (SGX or TDX) verified offline with `dcap-qvl`.

`verify(quote, collateral_json, now, policy)` checks the quote's signature chain up to Intel's SGX root
CA (or a given root CA, for a test PKI), the QE report, the collateral's CRLs and TCB info at the time
`now` (a Unix time; pinned by the caller: collateral expires, see docs/attestation.md), and then this
project's policy: the TCB status must be one the policy accepts and, when the policy lists measurements,
the quote's measurement (MRENCLAVE for SGX, MRTD for TDX) must be one of them.

Key binding: an executor's quote binds its signing key when the first 32 bytes of the report data are
`binding_digest(address, nonce)` = sha256(b"agentgpt-executor-attestation-v1" || address (20 bytes) ||
nonce (32 bytes)) and the last 32 bytes are the nonce. `Attestation.bound_key` is the address when the
report data has that form for the address the caller expects, else "".
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dcap_qvl  # type: ignore[import-untyped]

from agentgpt.errors import InvalidArgument
from agentgpt.runtime.config import ConfigError, setting

#: TCB statuses dcap-qvl reports (Intel's names); the policy chooses which are acceptable.
TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
BINDING_DOMAIN = b"agentgpt-executor-attestation-v1"
MAX_QUOTE_BYTES = 64 * 1024
MAX_COLLATERAL_BYTES = 256 * 1024


class AttestationError(InvalidArgument):
    """A quote is refused: malformed, not signed up to the root CA, collateral expired or revoked, or
    outside the policy. The message says which."""


@dataclass(frozen=True)
class Policy:
    """What an acceptable attestation is: TCB statuses (default UpToDate only) and, when not empty,
    the measurements (lowercase hex, MRENCLAVE or MRTD) allowed."""

    tcb: frozenset[str] = frozenset({"UpToDate"})
    measurements: frozenset[str] = frozenset()

    @staticmethod
    def of(tcb: Iterable[str] = ("UpToDate",), measurements: Iterable[str] = ()) -> Policy:
        return Policy(frozenset(tcb), frozenset(normalize_measurement(m) for m in measurements))

    def problem(self, att: Attestation) -> str:
        """Why `att` does not satisfy this policy ("" when it does)."""
        if att.tcb_status not in self.tcb:
            return f"TCB status {att.tcb_status} is not accepted (accepted: {', '.join(sorted(self.tcb))})"
        if self.measurements and att.measurement not in self.measurements:
            return (
                f"measurement {att.measurement} ({'MRENCLAVE' if att.kind == 'sgx' else 'MRTD'}) is not "
                f"one of the {len(self.measurements)} allowed"
            )
        return ""


@dataclass(frozen=True)
class Attestation:
    kind: str  # "sgx" | "tdx"
    measurement: str  # MRENCLAVE (SGX) or MRTD (TDX), lowercase hex
    mrsigner: str  # SGX only ("" for TDX)
    tcb_status: str
    advisory_ids: tuple[str, ...]
    report_data: bytes
    bound_key: str = ""  # the executor address the report data binds ("" when it binds none asked for)
    verified_at: int = 0  # the `now` it was verified at
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def summary(self) -> str:
        bound = f", binds {self.bound_key}" if self.bound_key else ", binds no executor key"
        return f"{self.kind} {self.measurement[:16]}… TCB {self.tcb_status}{bound}"


def normalize_measurement(m: str) -> str:
    h = str(m).strip().lower().removeprefix("0x")
    if len(h) not in (64, 96) or any(c not in "0123456789abcdef" for c in h):
        raise InvalidArgument(
            "attestation.measurements", f"{str(m)[:100]!r} is not a 32-byte (MRENCLAVE) or 48-byte (MRTD) hex"
        )
    return h


def binding_digest(address: str, nonce: bytes) -> bytes:
    a = bytes.fromhex(address.lower().removeprefix("0x"))
    if len(a) != 20 or len(nonce) != 32:
        raise InvalidArgument("attestation.binding", "needs a 20-byte address and a 32-byte nonce")
    return hashlib.sha256(BINDING_DOMAIN + a + nonce).digest()


def report_data_for(address: str, nonce: bytes) -> bytes:
    """The 64 bytes an executor puts in its quote's report data to bind `address`."""
    return binding_digest(address, nonce) + nonce


def binds(report_data: bytes, address: str) -> bool:
    if len(report_data) != 64:
        return False
    return report_data[:32] == binding_digest(address, report_data[32:])


def verify(
    quote: bytes,
    collateral_json: str | bytes,
    now: int,
    policy: Policy = Policy(),
    *,
    address: str = "",
    root_ca_der: bytes | None = None,
) -> Attestation:
    """Verify `quote` against `collateral_json` at Unix time `now` and check it against `policy`; with
    `address`, also whether the report data binds it (`bound_key`). AttestationError names the problem."""
    if not quote or len(quote) > MAX_QUOTE_BYTES:
        raise AttestationError("attestation.quote", f"must be 1..{MAX_QUOTE_BYTES} bytes")
    if isinstance(collateral_json, bytes):
        collateral_json = collateral_json.decode("utf-8", "replace")
    if not collateral_json or len(collateral_json) > MAX_COLLATERAL_BYTES:
        raise AttestationError("attestation.collateral", f"must be 1..{MAX_COLLATERAL_BYTES} bytes of JSON")
    try:
        collateral = dcap_qvl.QuoteCollateralV3.from_json(collateral_json)
    except Exception as exc:  # the binding raises ValueError/TypeError/its own: all mean "bad collateral"
        raise AttestationError("attestation.collateral", f"is not DCAP collateral JSON: {exc}") from None
    try:
        if root_ca_der is None:
            verified = dcap_qvl.verify(quote, collateral, int(now))
        else:
            verified = dcap_qvl.verify_with_root_ca(quote, collateral, root_ca_der, int(now))
        doc = json.loads(verified.to_json())
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise AttestationError("attestation.quote", f"refused by DCAP verification: {text[:400]}") from None
    report = doc.get("report") or {}
    if "SgxEnclave" in report:
        r = report["SgxEnclave"]
        kind, measurement, mrsigner = "sgx", r["mr_enclave"], r["mr_signer"]
    else:
        td = next((report[k] for k in ("TD10", "TD15") if k in report), None)
        if td is None:
            raise AttestationError(
                "attestation.quote", f"has an unsupported report type ({', '.join(report)})"
            )
        kind, measurement, mrsigner = "tdx", td["mr_td"], ""
        r = td
    report_data = bytes.fromhex(r["report_data"])
    att = Attestation(
        kind=kind,
        measurement=str(measurement).lower(),
        mrsigner=str(mrsigner).lower(),
        tcb_status=str(doc.get("status", "")),
        advisory_ids=tuple(doc.get("advisory_ids") or ()),
        report_data=report_data,
        bound_key=address.lower() if address and binds(report_data, address) else "",
        verified_at=int(now),
    )
    problem = policy.problem(att)
    if problem:
        raise AttestationError("attestation", problem)
    return att


def spec_policy(block: Any) -> Policy | None:
    """The Policy a session spec's normalised `attestation` block (params["attestation"]) requires, or
    None when it requires none."""
    if not isinstance(block, dict) or not block.get("require"):
        return None
    return Policy.of(block.get("tcb") or ("UpToDate",), block.get("measurements") or ())


def describe_quote(quote: bytes) -> str:
    """What a quote claims, parsed but NOT verified (for listings: the recovery oracle verifies it):
    e.g. "sgx MRENCLAVE 33d8736db756ed49…"; "" for no quote; "unparsable quote (...)" otherwise."""
    if not quote:
        return ""
    try:
        q = dcap_qvl.parse_quote(quote)
        if q.is_sgx():
            return f"sgx MRENCLAVE {bytes(q.report.mr_enclave).hex()[:16]}…"
        return f"tdx MRTD {bytes(q.report.mr_td).hex()[:16]}…"
    except Exception as exc:
        return f"unparsable quote ({' '.join(str(exc).split())[:80]})"


@dataclass(frozen=True)
class AttestationConfig:
    """How a service verifies executors' quotes (AGENTGPT_ATTESTATION_*): the session service at
    activation, the recovery oracle when it chooses an executor."""

    attestation_time: int = setting(
        0,
        "Unix time at which executors' DCAP quotes are verified against their collateral; 0: the current "
        "time. Pinned only to verify recorded sample collateral (tests, demos)",
    )
    attestation_root_ca_file: str = setting(
        "", "DER file of the root CA quotes must chain to; empty: Intel's SGX root CA (built into dcap-qvl)"
    )
    attestation_require_binding: bool = setting(
        True,
        "Refuse a quote whose report data does not bind the executor's address (docs/attestation.md). "
        "False only for sample quotes made without this project's binding",
    )


@dataclass(frozen=True)
class Verifier:
    """`verify` with a service's settings: at `at_time` (0: now), chained to `root_ca_der` (None: Intel's),
    and with `require_binding` the report data must bind the executor's address."""

    at_time: int = 0
    root_ca_der: bytes | None = None
    require_binding: bool = True

    @staticmethod
    def of(config: AttestationConfig) -> Verifier:
        """The verifier `config` describes; ConfigError when its root CA file cannot be read."""
        root: bytes | None = None
        if config.attestation_root_ca_file:
            try:
                root = Path(config.attestation_root_ca_file).read_bytes()
            except OSError as exc:
                raise ConfigError(f"AGENTGPT_ATTESTATION_ROOT_CA_FILE: {exc}") from None
        return Verifier(config.attestation_time, root, config.attestation_require_binding)

    def check(self, quote: bytes, collateral: str, address: str, policy: Policy) -> Attestation:
        """The executor's attestation, verified and satisfying `policy`; AttestationError otherwise."""
        now = self.at_time or int(time.time())
        att = verify(quote, collateral, now, policy, address=address, root_ca_der=self.root_ca_der)
        if self.require_binding and not att.bound_key:
            raise AttestationError(
                "attestation.report_data",
                f"the quote's report data does not bind its address {address} (sha256 binding, "
                "docs/attestation.md)",
            )
        return att

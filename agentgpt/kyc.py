"""The KYC attestation: the signed claim an issuer hands a session owner (docs/design.md §7).

It sits in a session's params as `kyc_attestation` = {subject, tier, expires, issuer, signature}: an
EIP-712 signature by the issuer over KycAttestation(subject, tier, expires) in the "AgentGPT KYC"
domain (version 1, no chain id: one attestation holds on every chain). Issuers sign it
(`sign_attestation`); the executor's `kyc_tier<N>` decorators recover its signer (`attestation_signer`)
and check it against the issuers they trust (AGENTGPT_KYC_ISSUERS).
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address

DOMAIN = {"name": "AgentGPT KYC", "version": "1"}
TYPES = {
    "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"}],
    "KycAttestation": [
        {"name": "subject", "type": "address"},
        {"name": "tier", "type": "uint8"},
        {"name": "expires", "type": "uint64"},
    ],
}


def attestation_message(subject: str, tier: int, expires: int) -> dict[str, Any]:
    """The EIP-712 typed data the issuer signs."""
    return {
        "domain": DOMAIN,
        "types": TYPES,
        "primaryType": "KycAttestation",
        "message": {"subject": to_checksum_address(subject), "tier": tier, "expires": expires},
    }


def sign_attestation(issuer_key: str, subject: str, tier: int, expires: int) -> dict[str, Any]:
    """The `kyc_attestation` params entry an issuer hands a session owner."""
    signed = Account.sign_message(
        encode_typed_data(full_message=attestation_message(subject, tier, expires)), issuer_key
    )
    return {
        "subject": to_checksum_address(subject),
        "tier": tier,
        "expires": expires,
        "issuer": Account.from_key(issuer_key).address,
        "signature": "0x" + bytes(signed.signature).hex(),
    }


def attestation_signer(subject: str, tier: int, expires: int, signature: bytes) -> str:
    """The checksummed address that signed KycAttestation(subject, tier, expires); raises on a malformed
    subject or signature."""
    return str(
        Account.recover_message(
            encode_typed_data(full_message=attestation_message(subject, tier, expires)), signature=signature
        )
    )

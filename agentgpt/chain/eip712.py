"""Build and sign the EIP-712 messages the contracts accept, so owners act without holding ETH.

The session service relays `SessionFactory.*BySig` calls carrying the owner's signature over one of the
typed structs below, and moves AGPT with the owner's ERC-2612 permit. The type strings here must stay
byte-for-byte equal to the typehashes in contracts/SessionFactory.sol; the contract tests sign with these
helpers, so a drift fails them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

FACTORY_DOMAIN_NAME = "AgentGPT SessionFactory"
FACTORY_DOMAIN_VERSION = "1"
AGPT_DOMAIN_NAME = "AgentGPT Token"
AGPT_DOMAIN_VERSION = "1"

NO_POLICIES_HASH = keccak(b"")  # an activation without action policies: keccak256 of empty bytes

_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

FACTORY_TYPES: dict[str, list[dict[str, str]]] = {
    "CreateSession": [
        {"name": "owner", "type": "address"},
        {"name": "workflowHash", "type": "bytes32"},
        {"name": "initialBudget", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "Activate": [
        {"name": "sessionId", "type": "uint256"},
        {"name": "workflowHash", "type": "bytes32"},
        {"name": "executor", "type": "address"},
        {"name": "allowlist", "type": "AllowedCall[]"},
        {"name": "policyHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "AllowedCall": [
        {"name": "target", "type": "address"},
        {"name": "selector", "type": "bytes4"},
    ],
    "UpdateBudget": [
        {"name": "sessionId", "type": "uint256"},
        {"name": "amount", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "Complete": [
        {"name": "sessionId", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}

PERMIT_TYPES: dict[str, list[dict[str, str]]] = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


@dataclass(frozen=True)
class PermitSignature:
    """An ERC-2612 permit; `as_tuple()` is SessionFactory's `Permit` calldata struct."""

    deadline: int
    v: int
    r: bytes
    s: bytes

    def as_tuple(self) -> tuple[int, int, bytes, bytes]:
        return (self.deadline, self.v, self.r, self.s)


#: SessionFactory's `Permit` meaning "no permit: use the existing allowance".
NO_PERMIT: tuple[int, int, bytes, bytes] = (0, 0, b"\x00" * 32, b"\x00" * 32)


def _domain(name: str, version: str, chain_id: int, contract: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(contract),
    }


def _b32(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def _selector(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 4:
        raise ValueError(f"a selector is 4 bytes, got {len(raw)}")
    return raw


def factory_message(
    primary_type: str, message: dict[str, Any], *, chain_id: int, factory: str
) -> dict[str, Any]:
    """A full EIP-712 message (domain, types, primaryType, message) for the SessionFactory."""
    if primary_type not in FACTORY_TYPES or primary_type == "AllowedCall":
        raise ValueError(f"unknown SessionFactory action {primary_type!r}")
    types: dict[str, Any] = {"EIP712Domain": _DOMAIN_FIELDS, primary_type: FACTORY_TYPES[primary_type]}
    if primary_type == "Activate":
        types["AllowedCall"] = FACTORY_TYPES["AllowedCall"]
    return {
        "domain": _domain(FACTORY_DOMAIN_NAME, FACTORY_DOMAIN_VERSION, chain_id, factory),
        "types": types,
        "primaryType": primary_type,
        "message": message,
    }


def sign_message(private_key: str | bytes, full_message: dict[str, Any]) -> bytes:
    """65-byte (r, s, v) signature of a full EIP-712 message."""
    signed = Account.sign_message(encode_typed_data(full_message=full_message), private_key)
    return bytes(signed.signature)


def recover_signer(full_message: dict[str, Any], signature: bytes) -> str:
    return str(Account.recover_message(encode_typed_data(full_message=full_message), signature=signature))


def sign_create_session(
    private_key: str | bytes,
    *,
    chain_id: int,
    factory: str,
    owner: str,
    workflow_hash: bytes | str,
    initial_budget: int,
    nonce: int,
    deadline: int,
) -> bytes:
    msg = {
        "owner": to_checksum_address(owner),
        "workflowHash": _b32(workflow_hash),
        "initialBudget": initial_budget,
        "nonce": nonce,
        "deadline": deadline,
    }
    return sign_message(
        private_key, factory_message("CreateSession", msg, chain_id=chain_id, factory=factory)
    )


def sign_activate(
    private_key: str | bytes,
    *,
    chain_id: int,
    factory: str,
    session_id: int,
    workflow_hash: bytes | str,
    executor: str,
    allowlist: Sequence[tuple[str, bytes | str]],
    nonce: int,
    deadline: int,
    policy_hash: bytes = NO_POLICIES_HASH,
) -> bytes:
    """`allowlist` is a sequence of (target address, 4-byte selector), in the order passed on chain;
    `policy_hash` is keccak256 of the account's encoded action policies (agentgpt.policies.policy_hash)."""
    msg = {
        "sessionId": session_id,
        "workflowHash": _b32(workflow_hash),
        "executor": to_checksum_address(executor),
        "allowlist": [{"target": to_checksum_address(t), "selector": _selector(s)} for t, s in allowlist],
        "policyHash": policy_hash,
        "nonce": nonce,
        "deadline": deadline,
    }
    return sign_message(private_key, factory_message("Activate", msg, chain_id=chain_id, factory=factory))


def sign_update_budget(
    private_key: str | bytes,
    *,
    chain_id: int,
    factory: str,
    session_id: int,
    amount: int,
    nonce: int,
    deadline: int,
) -> bytes:
    msg = {"sessionId": session_id, "amount": amount, "nonce": nonce, "deadline": deadline}
    return sign_message(private_key, factory_message("UpdateBudget", msg, chain_id=chain_id, factory=factory))


def sign_complete(
    private_key: str | bytes, *, chain_id: int, factory: str, session_id: int, nonce: int, deadline: int
) -> bytes:
    msg = {"sessionId": session_id, "nonce": nonce, "deadline": deadline}
    return sign_message(private_key, factory_message("Complete", msg, chain_id=chain_id, factory=factory))


def permit_message(
    *, chain_id: int, token: str, owner: str, spender: str, value: int, nonce: int, deadline: int
) -> dict[str, Any]:
    return {
        "domain": _domain(AGPT_DOMAIN_NAME, AGPT_DOMAIN_VERSION, chain_id, token),
        "types": {"EIP712Domain": _DOMAIN_FIELDS, **PERMIT_TYPES},
        "primaryType": "Permit",
        "message": {
            "owner": to_checksum_address(owner),
            "spender": to_checksum_address(spender),
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def sign_permit(
    private_key: str | bytes,
    *,
    chain_id: int,
    token: str,
    owner: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
) -> PermitSignature:
    """ERC-2612 permit for AGPT (`nonce` is `AGPT.nonces(owner)`, distinct from the factory's nonces)."""
    full = permit_message(
        chain_id=chain_id,
        token=token,
        owner=owner,
        spender=spender,
        value=value,
        nonce=nonce,
        deadline=deadline,
    )
    signed = Account.sign_message(encode_typed_data(full_message=full), private_key)
    return PermitSignature(
        deadline=deadline, v=signed.v, r=signed.r.to_bytes(32, "big"), s=signed.s.to_bytes(32, "big")
    )

"""Owner authentication of session requests: EIP-712 signatures over (action, session, request hash,
nonce, deadline), built, signed and verified by the same code in the CLI, the tests and the service.

The signed struct (documented on `agentgpt.common.v1.OwnerSignature`) is

    AgentGPTRequest(string action,string sessionId,bytes32 requestHash,uint256 nonce,uint256 deadline)

in the domain {name: "AgentGPT Sessions", version: "1", chainId: <home chain id>}. `requestHash` is
keccak256 of the request's deterministic protobuf serialization with its `auth` field cleared, so the
signature covers every other field of the request and nothing can be changed in flight.

Read RPCs carry no `auth` field; an owner authenticates a read with the same signature sent as gRPC
metadata (`READ_AUTH_HEADER`, a serialized OwnerSignature). Read signatures are not nonce-checked: a
replayed read within its deadline reveals nothing its signer could not already see.

The session service additionally relays the owner's SessionFactory `...BySig` signature for on-chain
actions in the `CHAIN_SIGNATURE_HEADER` metadata (see agentgpt.chain.eip712), because the API has no
field for it yet.
"""

from __future__ import annotations

import re
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from google.protobuf.message import Message

from agentgpt.common.v1 import common_pb2

DOMAIN_NAME = "AgentGPT Sessions"
DOMAIN_VERSION = "1"
READ_AUTH_HEADER = "x-agentgpt-auth-bin"
CHAIN_SIGNATURE_HEADER = "x-agentgpt-chain-sig-bin"
SERVICE_HEADER = "x-agentgpt-service"

REQUEST_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
    ],
    "AgentGPTRequest": [
        {"name": "action", "type": "string"},
        {"name": "sessionId", "type": "string"},
        {"name": "requestHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}


def action_of(request: Message) -> str:
    """The action name signed for a request: its RPC in snake case ("CreateSessionRequest" -> "create_session")."""
    name = type(request).DESCRIPTOR.name.removesuffix("Request")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def request_hash(request: Message) -> bytes:
    """keccak256 of the deterministic serialization of `request` without its `auth` field."""
    copy = type(request)()
    copy.CopyFrom(request)
    if "auth" in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField("auth")
    return keccak(copy.SerializeToString(deterministic=True))


def typed_request(
    *, action: str, session_id: str, req_hash: bytes, nonce: int, deadline: int, chain_id: int
) -> dict[str, Any]:
    return {
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "types": REQUEST_TYPES,
        "primaryType": "AgentGPTRequest",
        "message": {
            "action": action,
            "sessionId": session_id,
            "requestHash": req_hash,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def session_id_of(request: Message) -> str:
    return str(getattr(request, "session_id", ""))


def sign_request(
    private_key: str | bytes, request: Message, *, nonce: int, deadline: int, chain_id: int
) -> common_pb2.OwnerSignature:
    """The OwnerSignature authorising `request` (whose auth field, if any, is ignored)."""
    account = Account.from_key(private_key)
    full = typed_request(
        action=action_of(request),
        session_id=session_id_of(request),
        req_hash=request_hash(request),
        nonce=nonce,
        deadline=deadline,
        chain_id=chain_id,
    )
    signed = Account.sign_message(encode_typed_data(full_message=full), private_key)
    return common_pb2.OwnerSignature(
        signer=account.address, nonce=nonce, deadline=deadline, signature=bytes(signed.signature)
    )


def signed(
    request: Message, private_key: str | bytes, *, nonce: int, deadline: int, chain_id: int
) -> Message:
    """`request` with its `auth` field set to the owner's signature (convenience for clients)."""
    request.auth.CopyFrom(
        sign_request(private_key, request, nonce=nonce, deadline=deadline, chain_id=chain_id)
    )  # type: ignore[attr-defined]
    return request


def read_metadata(
    private_key: str | bytes, request: Message, *, deadline: int, chain_id: int
) -> tuple[tuple[str, bytes], ...]:
    """gRPC metadata authenticating a read request as its owner."""
    sig = sign_request(private_key, request, nonce=0, deadline=deadline, chain_id=chain_id)
    return ((READ_AUTH_HEADER, sig.SerializeToString()),)


def recover_signer(auth: common_pb2.OwnerSignature, request: Message, *, chain_id: int) -> str:
    """The checksummed address that produced `auth.signature` over `request`; raises ValueError when
    the signature is malformed."""
    full = typed_request(
        action=action_of(request),
        session_id=session_id_of(request),
        req_hash=request_hash(request),
        nonce=auth.nonce,
        deadline=auth.deadline,
        chain_id=chain_id,
    )
    try:
        return str(
            Account.recover_message(encode_typed_data(full_message=full), signature=bytes(auth.signature))
        )
    except Exception as exc:  # eth-keys raises several types for junk signatures
        raise ValueError(f"signature cannot be recovered: {exc}") from None


def same_address(a: str, b: str) -> bool:
    try:
        return to_checksum_address(a) == to_checksum_address(b)
    except ValueError:
        return False

"""Owner authentication of session requests: EIP-712 signatures over (action, session, request hash,
nonce, deadline), built, signed and verified by the same code in the CLI, the tests and the service.

The signed struct (documented on `agentgpt.common.v1.OwnerSignature`) is

    AgentGPTRequest(string action,string sessionId,bytes32 requestHash,uint256 nonce,uint256 deadline)

in the domain {name: "AgentGPT Sessions", version: "1", chainId: <home chain id>}. `requestHash` is
keccak256 of the request's deterministic protobuf serialization with its `auth` and `chain_signature`
fields cleared (`UNSIGNED_FIELDS`), so the signature covers every other field of the request and nothing
can be changed in flight. `chain_signature` is excluded because it is made *after* the owner signature (it
signs SessionFactory's typed data whose deadline is `auth.deadline`) and is checked by the contract
itself; excluding it also keeps every signature made before the field existed valid (an unset field is not
serialized, so the hash is the same).

Reads (GetSession, ListSessions, WatchSession, InspectSession) carry the owner's signature in their `auth`
field like any other request; the signed action is the RPC's name in snake case ("get_session", ...), as
for every request (the proto comments' action "read" is not what is signed). Read signatures are not
nonce-checked: a replayed read within its deadline reveals nothing its signer could not already see.

The on-chain actions (create, activate, update budget, complete) carry the owner's SessionFactory
`...BySig` signature in `chain_signature` (see agentgpt.chain.eip712), which the service relays.

Deprecated (accepted for one release, then removed): the same two values sent as gRPC metadata instead of
fields — `READ_AUTH_HEADER` (a serialized OwnerSignature, built by `read_metadata`) and
`CHAIN_SIGNATURE_HEADER` (the raw 65 bytes). The session service uses a request field when it is set and
falls back to the header only when it is not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from google.protobuf.message import Message

from agentgpt.common.v1 import common_pb2

if TYPE_CHECKING:
    from eth_account.messages import SignableMessage

DOMAIN_NAME = "AgentGPT Sessions"
DOMAIN_VERSION = "1"
#: Deprecated: use the read request's `auth` field. Removed after the next release.
READ_AUTH_HEADER = "x-agentgpt-auth-bin"
#: Deprecated: use the request's `chain_signature` field. Removed after the next release.
CHAIN_SIGNATURE_HEADER = "x-agentgpt-chain-sig-bin"
SERVICE_HEADER = "x-agentgpt-service"
#: Request fields the owner signature does not cover (see the module doc).
UNSIGNED_FIELDS = ("auth", "chain_signature")

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
    """keccak256 of the deterministic serialization of `request` without its `UNSIGNED_FIELDS`.

    Also the request's idempotency fingerprint in the session service: a retry re-signed with a fresh
    nonce, or carrying a new chain signature, is still the same request."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in UNSIGNED_FIELDS:
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
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


_REQUEST_TYPE_HASH = keccak(
    b"AgentGPTRequest(string action,string sessionId,bytes32 requestHash,uint256 nonce,uint256 deadline)"
)
_DOMAIN_TYPE_HASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId)")


@functools.lru_cache(maxsize=16)
def _domain_separator(chain_id: int) -> bytes:
    return keccak(
        _DOMAIN_TYPE_HASH
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + chain_id.to_bytes(32, "big")
    )


def signable_request(
    *, action: str, session_id: str, req_hash: bytes, nonce: int, deadline: int, chain_id: int
) -> SignableMessage:
    """The EIP-712 message of `typed_request(...)`, encoded directly for this one fixed struct (what
    eth_account's `encode_typed_data` makes of it, without its generic type parsing: the tests hold the
    two equal). Raises ValueError for values the struct cannot hold."""
    from eth_account.messages import SignableMessage

    if len(req_hash) != 32:
        raise ValueError(f"requestHash must be 32 bytes, got {len(req_hash)}")
    if not (0 <= nonce < 2**256 and 0 <= deadline < 2**256 and 0 <= chain_id < 2**256):
        raise ValueError("nonce, deadline and chainId must be uint256 values")
    struct = keccak(
        _REQUEST_TYPE_HASH
        + keccak(action.encode())
        + keccak(session_id.encode())
        + bytes(req_hash)
        + nonce.to_bytes(32, "big")
        + deadline.to_bytes(32, "big")
    )
    return SignableMessage(b"\x01", _domain_separator(chain_id), struct)


def sign_request(
    private_key: str | bytes, request: Message, *, nonce: int, deadline: int, chain_id: int
) -> common_pb2.OwnerSignature:
    """The OwnerSignature authorising `request` (whose auth field, if any, is ignored)."""
    from eth_account import Account  # (imported when first used: it costs a CLI that signs nothing ~0.7 s)

    account = Account.from_key(private_key)
    message = signable_request(
        action=action_of(request),
        session_id=session_id_of(request),
        req_hash=request_hash(request),
        nonce=nonce,
        deadline=deadline,
        chain_id=chain_id,
    )
    signed = Account.sign_message(message, private_key)
    return common_pb2.OwnerSignature(
        signer=account.address, nonce=nonce, deadline=deadline, signature=bytes(signed.signature)
    )


def signed(
    request: Message, private_key: str | bytes, *, nonce: int, deadline: int, chain_id: int
) -> Message:
    """`request` with its `auth` field set to the owner's signature (convenience for clients)."""
    sig = sign_request(private_key, request, nonce=nonce, deadline=deadline, chain_id=chain_id)
    target: Any = request  # every signable request has an `auth` OwnerSignature field
    target.auth.CopyFrom(sig)
    return request


def read_metadata(
    private_key: str | bytes, request: Message, *, deadline: int, chain_id: int
) -> tuple[tuple[str, bytes], ...]:
    """Deprecated: gRPC metadata authenticating a read request as its owner. Set the read request's `auth`
    field instead (`signed(request, key, nonce=0, ...)`); the service accepts this header for one more
    release."""
    sig = sign_request(private_key, request, nonce=0, deadline=deadline, chain_id=chain_id)
    return ((READ_AUTH_HEADER, sig.SerializeToString()),)


def recover_signer(auth: common_pb2.OwnerSignature, request: Message, *, chain_id: int) -> str:
    """The checksummed address that produced `auth.signature` over `request`; raises ValueError when
    the signature is malformed.

    A pure function of the two messages and the chain id, so its answers are remembered (by the
    messages' serialized bytes): a client reusing a read signature within its deadline costs one
    recovery, not one per call. Deadlines, nonces and ownership are the caller's checks, made on every
    call; failures are not remembered."""
    return _recover_request(
        chain_id,
        cast(Hashable, type(request)),  # (a class: hashable, though typeshed's Message says otherwise)
        request.SerializeToString(deterministic=True),
        auth.SerializeToString(deterministic=True),
    )


@functools.lru_cache(maxsize=4096)
def _recover_request(chain_id: int, request_type: Hashable, request: bytes, auth: bytes) -> str:
    from eth_account import Account

    req = cast(type[Message], request_type).FromString(request)
    sig = common_pb2.OwnerSignature.FromString(auth)
    try:
        message = signable_request(
            action=action_of(req),
            session_id=session_id_of(req),
            req_hash=request_hash(req),
            nonce=sig.nonce,
            deadline=sig.deadline,
            chain_id=chain_id,
        )
        return str(Account.recover_message(message, signature=bytes(sig.signature)))
    except Exception as exc:  # eth-keys raises several types for junk signatures
        raise ValueError(f"signature cannot be recovered: {exc}") from None


@functools.lru_cache(maxsize=4096)
def checksum_address(address: str) -> str:
    """`address` in its EIP-55 checksummed form (remembered: the same few addresses come again and
    again); ValueError when it is not an address."""
    return str(to_checksum_address(address))


def same_address(a: str, b: str) -> bool:
    try:
        return checksum_address(a) == checksum_address(b)
    except ValueError:
        return False


# ------------------------------------------------------------------------------- service identities
#
# With mTLS on, a caller's identity is its client certificate's name (agentgpt.runtime.tls). The services
# are `session`, `indexer`, `recovery-oracle` and `executor-N`. `operator` is an operator's tools (the CLI
# against a deployment it runs, the local stack's supervisor and tests): it reads every session as a
# service and may restore one, but changes nothing else without the owner's signature. Any other name
# (e.g. `cli`, an owner's own client) has no service rights: every request needs the owner's signature.

#: Identity kinds a certificate name maps to (see `identity_kind`).
SESSION, INDEXER, ORACLE, EXECUTOR, OPERATOR, CLIENT = (
    "session",
    "indexer",
    "recovery-oracle",
    "executor",
    "operator",
    "client",
)
SERVICE_KINDS = frozenset({SESSION, INDEXER, ORACLE, EXECUTOR})
_ALL_SERVICES = SERVICE_KINDS
_ANYONE = frozenset({*SERVICE_KINDS, OPERATOR, CLIENT})


def identity_kind(name: str) -> str:
    """What an identity is: a service kind, `operator`, or `client` (anything else: no service rights).

    `executor-N` (any name starting with "executor") is an executor; `recovery_oracle` is accepted for the
    oracle as the header-trust mode spells it."""
    if name.startswith("executor"):
        return EXECUTOR
    name = name.replace("_", "-")
    if name in (SESSION, INDEXER, ORACLE, OPERATOR):
        return name
    return CLIENT


def is_service_identity(name: str | None) -> bool:
    """Whether a certificate's name acts as a service identity (the services and `operator`); the
    allowlist (`RPC_CALLERS`) and the session service's own checks say what each may do."""
    return bool(name) and identity_kind(name or "") in SERVICE_KINDS | {OPERATOR}


def _rpcs(service: str, table: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    return {f"/{service}/{method}": kinds for method, kinds in table.items()}


_SESSION_SVC = "agentgpt.session.v1.SessionService"
_EXECUTOR_SVC = "agentgpt.executor.v1.ExecutorService"
_RECOVERY_SVC = "agentgpt.recovery.v1.RecoveryService"

#: Who may call each RPC (identity kinds), derived from what each service calls (docs/design.md §7).
#: RPCs not listed (the owner commands, the indexer's reads, health, reflection) are open to every
#: certificate the CA signed: the owner commands check the owner's signature themselves. `client` in a
#: set means owners through a client (their signature is still required by the service).
RPC_CALLERS: dict[str, frozenset[str]] = {
    **_rpcs(
        _SESSION_SVC,
        {
            # the executor's lease and its reports: executors only
            "ClaimLease": frozenset({EXECUTOR}),
            "RenewLease": frozenset({EXECUTOR}),
            "ReleaseLease": frozenset({EXECUTOR}),
            "ReportTask": frozenset({EXECUTOR}),
            "RecordCheckpoint": frozenset({EXECUTOR}),
            # recovery: the oracle moves sessions and reads their keys; restore is the oracle's or an operator's
            "ReassignExecutor": frozenset({ORACLE}),
            "GetSessionKeys": frozenset({ORACLE}),
            "RestoreSession": frozenset({ORACLE, OPERATOR}),
            # the oracle pauses/resumes/terminates as a service; owners (also through an operator's
            # certificate) with their signature
            "PauseSession": frozenset({ORACLE, CLIENT, OPERATOR}),
            "ResumeSession": frozenset({ORACLE, CLIENT, OPERATOR}),
            "TerminateSession": frozenset({ORACLE, CLIENT, OPERATOR}),
            # reads: every service, and owners with their read signature
            "GetSession": _ANYONE,
            "ListSessions": _ANYONE,
            "ListTasks": _ANYONE,
            "InspectSession": _ANYONE,
            "WatchSession": _ANYONE,
        },
    ),
    **_rpcs(
        _EXECUTOR_SVC,
        {
            "AssignSession": frozenset({SESSION, ORACLE}),
            "RehydrateSession": frozenset({SESSION, ORACLE}),
            "ReleaseSession": frozenset({SESSION, ORACLE}),
            # `agentgpt status` and the local stack's supervisor read it as well
            "GetExecutorStatus": frozenset({SESSION, ORACLE, OPERATOR, CLIENT}),
        },
    ),
    **_rpcs(
        _RECOVERY_SVC,
        {
            # an executor hands its sessions off on SIGTERM; an operator may start a recovery
            "RecoverSession": frozenset({EXECUTOR, OPERATOR}),
        },
    ),
}


def caller_refusal(method: str, identity: str) -> str | None:
    """Why `identity` may not call `method` (full gRPC name), or None when it may."""
    allowed = RPC_CALLERS.get(method)
    if allowed is None or identity_kind(identity) in allowed:
        return None
    rpc = method.rsplit("/", 1)[-1]
    names = ", ".join(sorted("executor-N" if k == EXECUTOR else k for k in allowed))
    return f"{rpc} may not be called by {identity!r}: it is reserved to {names}"

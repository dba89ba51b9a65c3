"""Who is calling: owner authentication (EIP-712 request signatures, judged at the service's clock) and
service identities: a verified client certificate's name (mTLS), or the `x-agentgpt-service` header where
a loopback-only local stack is configured to trust it. Which identities may call which RPC is
`agentgpt.auth.RPC_CALLERS`, enforced by the server before a request gets here. Also the transport-level values a call may carry
(`CallContext`) and where a request's signatures are found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from agentgpt import auth as owner_auth
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.errors import InvalidArgument, PermissionDenied, Unauthenticated
from services.session.clock import Clock
from services.session.model import Caller, SessionRecord


@dataclass(frozen=True)
class CallContext:
    """What the transport knows about a call: a service identity, and the values older clients
    send as (deprecated) metadata instead of request fields — an owner's read signature and the owner's
    SessionFactory signature to relay (see agentgpt.auth). Request fields win over these.

    `certified`: `service` comes from the caller's verified client certificate (None: a certificate that
    names no service), so it is trusted as is; otherwise it is the header, trusted only when configured."""

    service: str | None = None
    read_auth: common.OwnerSignature | None = None
    chain_signature: bytes = b""
    certified: bool = False


#: The recovery oracle's service identity (the only caller of GetSessionKeys) in the header-trust mode;
#: its certificate names it `recovery-oracle` (`is_oracle` accepts both).
ORACLE_IDENTITY = "recovery_oracle"


def is_oracle(service: str | None) -> bool:
    return bool(service) and owner_auth.identity_kind(service or "") == owner_auth.ORACLE


def read_signature(request: Message, ctx: CallContext) -> common.OwnerSignature | None:
    """The owner's read signature: the request's `auth` field, else the deprecated metadata header."""
    field: common.OwnerSignature | None = getattr(request, "auth", None)
    if field is not None and field.signature:
        return field
    if ctx.read_auth is not None and ctx.read_auth.signature:
        return ctx.read_auth
    return None


def chain_signature(request: Any, ctx: CallContext) -> bytes:
    """The owner's SessionFactory signature: the `chain_signature` field, else the deprecated header."""
    return bytes(getattr(request, "chain_signature", b"")) or ctx.chain_signature


def required_chain_signature(req: Any, ctx: CallContext) -> bytes:
    """The owner's SessionFactory signature for an action the service relays: exactly 65 bytes."""
    sig = chain_signature(req, ctx)
    if len(sig) != 65:
        raise InvalidArgument(
            "chain_signature",
            "the owner's 65-byte SessionFactory EIP-712 signature is required for this on-chain action "
            f"(got {len(sig)} bytes)",
        )
    return sig


def require_owner_or_service(caller: Caller, rec: SessionRecord) -> None:
    if caller.service:
        return
    if caller.owner is None or not owner_auth.same_address(caller.owner, rec.owner):
        raise PermissionDenied(f"auth.signer: {caller.owner} is not the owner of session {rec.session_id}")


def require_service(caller: Caller, what: str) -> None:
    if not caller.service:
        raise PermissionDenied(f"{what} is reserved to service identities (executors, the recovery oracle)")


class Callers:
    """Authenticates requests: owner signatures under the EIP-712 domain of `auth_chain_id`, certified
    service identities (mTLS), and the service header when `trust_service_header` is set (a loopback-only
    local stack without TLS)."""

    def __init__(self, *, auth_chain_id: int, trust_service_header: bool, clock: Clock) -> None:
        self.auth_chain_id = auth_chain_id
        self.trust_service_header = trust_service_header
        self.clock = clock

    def verify_owner_signature(self, request: Message, sig: common.OwnerSignature) -> str:
        """The checksummed owner address that signed `request`; UNAUTHENTICATED when expired,
        PERMISSION_DENIED when the signature does not recover to `sig.signer`."""
        now = self.clock()
        if sig.deadline < now:
            raise Unauthenticated(
                f"auth.deadline: the owner signature expired {int(now - sig.deadline)} s ago "
                f"(deadline {sig.deadline}); sign the request again with a later deadline"
            )
        try:
            recovered = owner_auth.recover_signer(sig, request, chain_id=self.auth_chain_id)
        except ValueError as exc:
            raise PermissionDenied(f"auth.signature: {exc}") from None
        if not owner_auth.same_address(recovered, sig.signer):
            raise PermissionDenied(
                f"auth.signature: signed by {recovered}, not by auth.signer {sig.signer} "
                "(wrong key, or the request changed after signing)"
            )
        return owner_auth.checksum_address(sig.signer)

    def service(self, ctx: CallContext) -> str | None:
        """The caller's service identity: its certificate's (mTLS), else the header where trusted."""
        if ctx.certified:
            return ctx.service
        return ctx.service if (self.trust_service_header and ctx.service) else None

    def caller(
        self, request: Message, ctx: CallContext, *, service_allowed: bool, operator_allowed: bool = False
    ) -> Caller:
        """Authenticate a mutating request: the owner's signature in `auth`, or a trusted service.

        An `operator` certificate reads as a service but changes nothing without the owner's signature,
        except what is `operator_allowed` (RestoreSession)."""
        sig: common.OwnerSignature | None = getattr(request, "auth", None)
        service = self.service(ctx)
        if (
            ctx.certified
            and service
            and not operator_allowed
            and owner_auth.identity_kind(service) == owner_auth.OPERATOR
        ):
            service = None
        if sig is not None and sig.signature:
            return Caller(owner=self.verify_owner_signature(request, sig), service=service)
        if service_allowed and service:
            return Caller(service=service)
        if service_allowed:
            raise Unauthenticated("auth: an owner signature or a service identity is required")
        raise Unauthenticated("auth: an owner signature is required")

    def service_caller(
        self, request: Message, ctx: CallContext, what: str, *, operator_allowed: bool = False
    ) -> Caller:
        """Authenticate an executor call (leases, reports, checkpoints): a service identity only."""
        caller = self.caller(request, ctx, service_allowed=True, operator_allowed=operator_allowed)
        require_service(caller, what)
        return caller

    def read_caller(self, request: Message, ctx: CallContext) -> Caller:
        service = self.service(ctx)
        if service:
            return Caller(service=service)
        sig = read_signature(request, ctx)
        if sig is not None:
            return Caller(owner=self.verify_owner_signature(request, sig))
        raise Unauthenticated("auth: reads need the owner's signature or a service identity")

"""Custody of the sessions' checkpoint data keys (docs/design.md §7).

The session service makes one AES-256 data key per (session, executor epoch): when a session activates
and whenever the home chain assigns it another executor (`Relay.settle` of ActivateSession and
ReassignExecutor, in the commit that records the new executor of record), so an executor removed from a
session never holds the key of what is written after its removal. The key's epoch is the chain's
assignment epoch (ExecutorAssigned). Keys are stored only wrapped (ECIES on secp256k1,
agentgpt.sealing) to the service's custodian key — its relayer key, or, without one (a development
service on the in-memory chain), a key made for the process, whose keys are then lost at restart — and
are re-wrapped to a caller's public key on request: the executor of record's with its lease
(ClaimLease), the recovery oracle's (GetSessionKeys).

The owner's public key, a recipient of every sealed checkpoint body, is recovered from the owner's
EIP-712 signature on ActivateSession (activation needs the owner's own signature) and checked against
the session's owner address; a session without one (activated before keys were kept, or restored from
the chain) has no keys, and its checkpoints stay plaintext.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any

from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from google.protobuf.message import Message

from agentgpt import auth as owner_auth
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.errors import FailedPrecondition, PermissionDenied
from agentgpt.sealing import Keyring, SessionKey, address_of, new_session_key, wrap_key
from agentgpt.session.v1 import session_pb2 as pb
from services.session.model import KeyRecord

log = logging.getLogger("agentgpt.session.keys")


class KeyCustody:
    """Makes, keeps (wrapped to the custodian key) and re-wraps the sessions' checkpoint data keys."""

    def __init__(self, private_key: bytes | str | None = None) -> None:
        if private_key is None:
            private_key = secrets.token_bytes(32)
            log.warning(
                "no relayer key: checkpoint data keys are kept wrapped to a key made for this process and "
                "cannot be opened after a restart (development only)"
            )
        self._keyring = Keyring(private_key=private_key)
        assert self._keyring.public_key is not None and self._keyring.address is not None
        self.public_key: bytes = self._keyring.public_key
        self.address: str = self._keyring.address

    def new_key_row(self, session_id: str, epoch: int, executor: str, now: float) -> dict[str, Any]:
        """A session_keys row holding a fresh data key for `epoch`, wrapped to the custodian."""
        key = new_session_key(epoch)
        return {
            "session_id": session_id,
            "epoch": epoch,
            "executor": to_checksum_address(executor),
            "custodian": self.address,
            "wrapped": wrap_key(key.key, self.public_key),
            "created_at": now,
        }

    def open(self, row: KeyRecord) -> SessionKey:
        if row.custodian != self.address:
            raise FailedPrecondition(
                f"session {row.session_id}'s epoch-{row.epoch} checkpoint key is kept wrapped to {row.custodian}, "
                f"not to this service's relayer key ({self.address}): run the service with the relayer key "
                "the key was made under"
            )
        return SessionKey(row.epoch, self._keyring.unwrap(row.wrapped))

    def rewrap(self, rows: Sequence[KeyRecord], public_key: bytes) -> list[pb.WrappedSessionKey]:
        """Every row's data key, wrapped to `public_key` instead, oldest epoch first."""
        return [
            pb.WrappedSessionKey(
                epoch=r.epoch, executor=r.executor, wrapped=wrap_key(self.open(r).key, public_key)
            )
            for r in sorted(rows, key=lambda r: r.epoch)
        ]


def owner_public_key(sig: common.OwnerSignature, request: Message, *, chain_id: int) -> bytes:
    """The 64-byte public key behind an owner's EIP-712 request signature (agentgpt.auth), which must
    be `sig.signer`'s: PERMISSION_DENIED otherwise."""
    full = owner_auth.typed_request(
        action=owner_auth.action_of(request),
        session_id=owner_auth.session_id_of(request),
        req_hash=owner_auth.request_hash(request),
        nonce=sig.nonce,
        deadline=sig.deadline,
        chain_id=chain_id,
    )
    from eth_account.messages import encode_typed_data

    signable = encode_typed_data(full_message=full)
    digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
    raw = bytes(sig.signature)
    try:
        if len(raw) != 65:
            raise BadSignature(f"{len(raw)} bytes, not 65")
        v = raw[64] - 27 if raw[64] >= 27 else raw[64]
        public_key = Signature(vrs=(v, int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big")))
        recovered = public_key.recover_public_key_from_msg_hash(digest).to_bytes()
    except (BadSignature, ValueError) as exc:
        raise PermissionDenied(
            f"auth.signature: the owner's public key cannot be recovered ({exc})"
        ) from None
    if not owner_auth.same_address(address_of(recovered), sig.signer):
        raise PermissionDenied(f"auth.signature: not made by auth.signer {sig.signer}")
    return bytes(recovered)

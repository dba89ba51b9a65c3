"""Errors of the Arweave archive client.

Availability problems (gateway down, timeouts, 5xx, rate limits, a transaction not yet served) are
`agentgpt.errors.Unavailable`: the caller may retry. A transaction whose bytes, id or signature do not check
out is `TransactionIntegrityError` (gRPC DATA_LOSS): the gateway served something other than what was
signed, and asking the same gateway again will not help. A gateway that refuses what we post is
`TransactionRejected` or, when the wallet cannot pay, `InsufficientFunds`: retrying unchanged will not help
either, a person has to act (fund the wallet, fix the request).
"""

from __future__ import annotations

import grpc

from agentgpt.errors import FailedPrecondition, NotFound, ServiceError, Unavailable


class TransactionIntegrityError(ServiceError):
    """A transaction read back does not verify: its data does not hash to its data_root, its id is not the
    SHA-256 of its signature, or its signature does not match its fields and owner (corrupt or forged)."""

    code = grpc.StatusCode.DATA_LOSS

    def __init__(self, message: str, *, tx_id: str) -> None:
        super().__init__(message)
        self.tx_id = tx_id


class TransactionNotFound(NotFound):
    """The gateway does not know this transaction id."""

    def __init__(self, message: str, *, tx_id: str) -> None:
        super().__init__(message)
        self.tx_id = tx_id


class TransactionPending(Unavailable):
    """The gateway knows the transaction but does not serve it yet (not mined): retry later."""

    def __init__(self, message: str, *, tx_id: str) -> None:
        super().__init__(message)
        self.tx_id = tx_id


class TransactionRejected(FailedPrecondition):
    """The gateway refused a transaction we posted (HTTP 4xx): invalid signature, bad anchor, malformed."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class InsufficientFunds(TransactionRejected):
    """The wallet holds less AR than the transaction's reward: fund the wallet (arlocal: ArweaveClient.fund)."""


class WalletError(ValueError):
    """A wallet file is missing, unreadable, or not an RSA-4096 JWK with its private part."""

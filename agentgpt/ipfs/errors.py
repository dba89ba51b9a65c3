"""Errors of the IPFS checkpoint layer.

Availability problems (node down, timeouts) are `agentgpt.errors.Unavailable`: the caller may retry.
Integrity problems are `ContentIntegrityError` and its subclasses: the bytes are wrong and retrying the
same source will not help, so they map to gRPC DATA_LOSS and must never be silently accepted.
"""

from __future__ import annotations

import grpc

from agentgpt.errors import NotFound, ServiceError


class ContentIntegrityError(ServiceError):
    """Bytes do not match their CID, or a document is malformed or undecryptable (corrupt or forged)."""

    code = grpc.StatusCode.DATA_LOSS


#: The brief's name for the same thing: what checkpoint readers catch.
CheckpointIntegrityError = ContentIntegrityError


class CidMismatchError(ContentIntegrityError):
    """A node answered a CID that differs from the one computed locally, or returned bytes that do not hash
    to the CID asked for."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class DecryptionError(ContentIntegrityError):
    """An encrypted envelope could not be opened: wrong key, wrong associated data, or tampered bytes
    (AES-GCM cannot tell these apart, by design)."""


class DocumentFormatError(ContentIntegrityError):
    """Stored bytes are not a valid (canonical dag-cbor / envelope / checkpoint) document."""


class ContentNotFound(NotFound):
    """The store does not hold this CID (and, for a node, could not fetch it)."""

    def __init__(self, message: str, *, cid: str) -> None:
        super().__init__(message)
        self.cid = cid

"""Domain errors shared by every service, and their gRPC status codes.

Domain code raises these; the server's error interceptor turns them into statuses, so servicers
never build statuses by hand. Messages are written for the person who sent the request.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base class: an error with a gRPC status code and a message a caller can act on."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """A request field is missing or malformed. The message always starts with the field's name."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    """The request is valid but the system is not in a state that allows it (wrong lifecycle state,
    stale lease epoch, idempotency key reused with a different request)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    """A concurrent update won (optimistic concurrency); re-read and retry."""

    code = grpc.StatusCode.ABORTED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(ServiceError):
    """A dependency (chain, IPFS, database, another service) failed; the request can be retried."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(ServiceError):
    """A limit was hit (budget, queue size, rate)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RpcError(Exception):
    """A call to another service failed. Raised by agentgpt.clients; carries the remote status."""

    def __init__(self, service: str, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{service}.{method} failed: {code.name}: {details}")
        self.service = service
        self.method = method
        self.code = code
        self.details = details

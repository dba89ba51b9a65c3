"""gRPC surface of the session service: proto <-> domain, nothing else."""

from __future__ import annotations

from agentgpt.session.v1 import session_pb2_grpc as pb_grpc


class SessionServicer(pb_grpc.SessionServiceServicer):
    """RPCs not overridden here answer UNIMPLEMENTED."""

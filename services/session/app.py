"""Assembles the session service from its config and dependencies."""

from __future__ import annotations

from agentgpt.runtime.server import ServiceDefinition, Servicer
from agentgpt.session.v1 import session_pb2, session_pb2_grpc
from services.session.config import SessionConfig
from services.session.servicer import SessionServicer
from services.session.validation import VALIDATORS


async def build(config: SessionConfig) -> ServiceDefinition:
    return ServiceDefinition(
        name="session",
        servicers=[
            Servicer(
                SessionServicer(),
                session_pb2_grpc.add_SessionServiceServicer_to_server,
                session_pb2.DESCRIPTOR.services_by_name["SessionService"],
            )
        ],
        validators=VALIDATORS,
    )

"""Assembles the executor service from its config and dependencies."""

from __future__ import annotations

import time

from agentgpt.clients import SessionClient, health_probe
from agentgpt.executor.v1 import executor_pb2, executor_pb2_grpc
from agentgpt.runtime.server import ServiceDefinition, Servicer
from services.executor.config import ExecutorConfig
from services.executor.servicer import ExecutorServicer
from services.executor.validation import VALIDATORS


async def build(config: ExecutorConfig, session: SessionClient | None = None) -> ServiceDefinition:
    session = session or SessionClient(config.session_addr)

    servicer = ExecutorServicer(config, address="", started_at=time.time())
    return ServiceDefinition(
        name="executor",
        servicers=[
            Servicer(
                servicer,
                executor_pb2_grpc.add_ExecutorServiceServicer_to_server,
                executor_pb2.DESCRIPTOR.services_by_name["ExecutorService"],
            )
        ],
        validators=VALIDATORS,
        probes={"session_service": health_probe("session service", session)},
        on_stop=[session.close],
    )

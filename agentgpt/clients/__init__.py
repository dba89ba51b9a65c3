"""Typed async clients for the four services, with deadlines, retries on UNAVAILABLE and one error type."""

from agentgpt.clients.base import ChannelOptions, ClientMetrics, ServiceClient, check_health, health_probe
from agentgpt.clients.services import ExecutorClient, IndexerClient, RecoveryClient, SessionClient

__all__ = [
    "ChannelOptions",
    "ClientMetrics",
    "ExecutorClient",
    "IndexerClient",
    "RecoveryClient",
    "ServiceClient",
    "SessionClient",
    "check_health",
    "health_probe",
]

from __future__ import annotations

from dataclasses import dataclass

from agentgpt.runtime.config import setting


@dataclass(frozen=True)
class ExecutorConfig:
    executor_id: str = setting("executor-1", "This executor's identity (lease holder name)")
    session_addr: str = setting("127.0.0.1:50051", "Session service gRPC address")
    capacity: int = setting(8, "Maximum sessions run at once")
    network: str = setting("", "Path of the network manifest (chains and contract addresses)")

from __future__ import annotations

from dataclasses import dataclass

from agentgpt.ipfs import IpfsConfig
from agentgpt.runtime.config import setting


@dataclass(frozen=True)
class RecoveryConfig(IpfsConfig):
    session_addr: str = setting("127.0.0.1:50051", "Session service gRPC address")
    indexer_addr: str = setting("127.0.0.1:50054", "Indexer service gRPC address")
    network: str = setting("", "Path of the network manifest (chains and contract addresses)")
    checkpoint_key: str = setting(
        "", "AES-256-GCM key (64 hex chars) opening sealed checkpoints (the executors' key). Secret"
    )
    oracle_key: str = setting(
        "",
        "Private key (hex) holding ORACLE_ROLE on the home chain's ExecutorRegistry: applies penalties "
        "for upheld claims. Secret: use AGENTGPT_ORACLE_KEY_FILE in production. Empty: claims are refused",
    )
    claim_attempts: int = setting(3, "Fetches of a checkpoint from IPFS before a data-loss claim is upheld")
    claim_window: float = setting(30.0, "Seconds the fetches of a data-loss claim are spread over")

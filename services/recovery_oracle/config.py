from __future__ import annotations

from dataclasses import dataclass

from agentgpt.attestation import AttestationConfig
from agentgpt.ipfs import IpfsConfig
from agentgpt.runtime.config import setting


@dataclass(frozen=True)
class RecoveryConfig(AttestationConfig, IpfsConfig):
    session_addr: str = setting("127.0.0.1:50051", "Session service gRPC address")
    indexer_addr: str = setting("127.0.0.1:50054", "Indexer service gRPC address")
    network: str = setting("", "Path of the network manifest (chains and contract addresses)")
    checkpoint_key: str = setting(
        "",
        "Legacy AES-256-GCM key (64 hex chars) opening version-1 checkpoint envelopes sealed with the "
        "executors' shared key; version-2 bodies open with each session's own keys. Secret",
    )
    oracle_key: str = setting(
        "",
        "Private key (hex) holding ORACLE_ROLE on the home chain's ExecutorRegistry: applies penalties "
        "for upheld claims; the session service also wraps sessions' checkpoint keys to it. Secret: use "
        "AGENTGPT_ORACLE_KEY_FILE in production. Empty: claims are refused (and a key made for the process "
        "receives checkpoint keys)",
    )
    claim_attempts: int = setting(3, "Fetches of a checkpoint from IPFS before a data-loss claim is upheld")
    claim_window: float = setting(30.0, "Seconds the fetches of a data-loss claim are spread over")
    executor_addrs: tuple[str, ...] = setting(
        (),
        "Comma-separated gRPC addresses of the executors: probed for health, and where recovered sessions "
        "are rehydrated (one per StatefulSet pod, e.g. executor-0.executor:50052)",
    )
    database_url: str = setting(
        "sqlite+aiosqlite:///recoveries.db",
        "SQLAlchemy URL of the recovery store (PostgreSQL when several oracle replicas share it)",
    )
    replica_id: str = setting("", "This oracle replica's name in recovery leases; empty: host name and pid")
    detect_interval: float = setting(
        0.5, "Seconds between detection passes (lapsed leases, orphaned recoveries)"
    )
    detect_grace: float = setting(
        1.0, "Seconds a lease must have lapsed (or a session gone unleased) before it is recovered"
    )
    detect_patience: float = setting(
        10.0,
        "Seconds a lapsed lease is left to its executor when that executor answers and says it runs the "
        "session (it renews once it reaches the session service again) before the session is recovered",
    )
    probe_interval: float = setting(0.5, "Seconds between status probes of each executor")
    probe_failures: int = setting(2, "Failed probes in a row after which an executor is dead")
    recovery_lease: float = setting(
        10.0, "Seconds a replica holds a recovery without writing to it before another may take it over"
    )
    give_up_after: float = setting(900.0, "Seconds a recovery step keeps retrying before the recovery FAILED")

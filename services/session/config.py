"""Settings of the session service, read once at start from AGENTGPT_* variables."""

from __future__ import annotations

from dataclasses import dataclass

from agentgpt.arweave.archiver import ArchiveConfig
from agentgpt.attestation import AttestationConfig
from agentgpt.ipfs import IpfsConfig
from agentgpt.runtime.config import setting


@dataclass(frozen=True)
class SessionConfig(AttestationConfig, ArchiveConfig, IpfsConfig):
    database_url: str = setting(
        "sqlite+aiosqlite:///sessions.db",
        "SQLAlchemy URL of SessionDB (SQLite default; postgresql+asyncpg://... in production)",
    )
    network: str = setting("", "Path of the network manifest (chains and contract addresses)")
    home_chain: str = setting("", "Name or id of the home chain in the manifest (default: its first chain)")
    relayer_key: str = setting(
        "",
        "Private key (hex) the service relays owners' signed transactions with; needs ETH, and ORACLE_ROLE on "
        "SessionFactory for pause/resume/terminate. The sessions' checkpoint keys are kept in SessionDB "
        "wrapped to it: keep it when rotating, or they no longer open. Secret: never logged",
    )
    auth_chain_id: int = setting(
        31337, "chainId of the owner-request EIP-712 domain when no network manifest is configured"
    )
    trust_service_header: bool = setting(
        False,
        "Accept the `x-agentgpt-service: <name>` header as a service identity: a plaintext local stack only "
        "(`agentgpt up --no-tls`); refused at start unless AGENTGPT_HOST is loopback, ignored under mTLS",
    )
    draft_ttl: int = setting(3600, "Seconds a session may stay DRAFT before it expires (seed: 1 h)")
    active_ttl: int = setting(72 * 3600, "Seconds of ACTIVE time before a session times out (seed: 72 h)")
    paused_ttl: int = setting(
        24 * 3600, "Seconds a session may stay PAUSED before it is terminated (seed: 24 h)"
    )
    timer_interval: float = setting(1.0, "Seconds between scans for due lifecycle timers")
    default_executor: str = setting("", "Executor address assigned on activation when the request names none")
    receipt_timeout: float = setting(60.0, "Seconds to wait for a relayed transaction's receipt")
    chain_sync_interval: float = setting(
        15.0,
        "Seconds between passes that grant executors the anchor writer role on sessions' secondary chains "
        "and audit each ACTIVE session's escrow against SessionDB (also run at once after an activation)",
    )
    metadata_interval: float = setting(
        5.0,
        "Seconds between passes that publish changed sessions' NFT metadata (ERC-721 JSON on IPFS) and set "
        "it as the token URI, one transaction per changed session per pass; 0 turns publishing off",
    )
    arweave_complete_window: float = setting(
        20.0,
        "Seconds CompleteSession keeps retrying an unreachable Arweave gateway, with backoff, before it "
        "answers UNAVAILABLE (the session stays ACTIVE; the owner asks again). Keep it well under the "
        "clients' CompleteSession deadline (120 s)",
    )

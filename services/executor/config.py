from __future__ import annotations

from dataclasses import dataclass

from agentgpt.arweave.archiver import ArchiveConfig
from agentgpt.ipfs import IpfsConfig
from agentgpt.runtime.config import setting


@dataclass(frozen=True)
class ExecutorConfig(ArchiveConfig, IpfsConfig):
    executor_id: str = setting("executor-1", "This executor's identity (lease holder name)")
    session_addr: str = setting("127.0.0.1:50051", "Session service gRPC address")
    capacity: int = setting(8, "Maximum sessions run at once")
    network: str = setting("", "Path of the network manifest (chains and contract addresses)")
    executor_key: str = setting(
        "",
        "Executor's secp256k1 private key (hex; signs transactions and task logs). Secret. "
        "Empty: a random key for this process (off-chain sessions only)",
    )
    claim_sessions: bool = setting(
        True, "Claim unleased ACTIVE sessions on its own (false: only when assigned)"
    )
    lease_ttl: int = setting(15, "Lease length in seconds; renewed every third of it")
    poll_interval: float = setting(0.5, "Seconds between queue polls and claim attempts when idle")
    checkpoint_interval: int = setting(50, "Tasks between checkpoints when the spec does not say")
    checkpoint_on_idle: bool = setting(
        True, "Also checkpoint the tasks not yet covered when a session's queue drains"
    )
    checkpoint_key: str = setting(
        "",
        "Legacy AES-256-GCM key (64 hex chars) opening version-1 checkpoint envelopes written with the "
        "executors' shared key. New checkpoints are sealed with each session's own key, which comes with "
        "the lease. Secret",
    )
    model_endpoint: str = setting(
        "",
        "Base URL of an OpenAI-compatible API (e.g. http://vllm:8000/v1). Empty: the built-in planner "
        "stands in for every model the specs name",
    )
    model_api_key: str = setting("", "Bearer key for the model endpoint. Secret")
    model_timeout: float = setting(30.0, "Seconds a model call may take")
    ofac_list: str = setting(
        "", "Sanctions list for ofac_filter (one address a line); empty = the shipped list"
    )
    kyc_issuers: tuple[str, ...] = setting((), "Comma-separated addresses of trusted KYC attestation issuers")
    payment_rail: str = setting(
        "",
        "Default payment rail: agpt_escrow (chargeBudget on chain) or ledger; empty = agpt_escrow with a network",
    )
    task_fee: int = setting(10**15, "AGPT base units charged per task")
    agpt_per_gas: int = setting(10**9, "AGPT base units charged per gas unit used")
    tx_stuck_after: float = setting(
        30.0, "Seconds before an unmined transaction is replaced with higher fees"
    )
    tx_bump_percent: int = setting(20, "Fee increase of a replacement transaction, percent (>= 10)")
    gas_retry_after: float = setting(12.0, "Seconds before a task deferred by gas_optimizer is retried")
    zk_dir: str = setting(
        "",
        "The zk_batch_prover's Groth16 setup (scripts/zk_setup.py); empty = .agentgpt/zk of this tree. "
        "Without one (or without Node) the executor cannot provide the decorator",
    )
    anchor_retry_base: float = setting(1.0, "First delay, seconds, before retrying a failed anchor (doubles)")
    task_attempts: int = setting(
        8,
        "Attempts a task gets when a dependency keeps failing (RPC, IPFS, model down) before it is "
        "marked FAILED; a task with a transaction in flight is retried until its outcome is known",
    )
    retry_base: float = setting(0.5, "First delay, seconds, before a task or the queue is retried (doubles)")
    retry_max: float = setting(30.0, "Longest delay, seconds, between retries of a task or the queue")
    attestation_quote_file: str = setting(
        "",
        "Path of this executor's Intel DCAP quote (SGX or TDX, binary) whose report data binds its key "
        "(docs/attestation.md); reported to the recovery oracle, which verifies it. Empty: not attested",
    )
    attestation_collateral_file: str = setting(
        "", "Path of the quote's DCAP collateral (JSON: TCB info, QE identity, CRLs, PCK chain)"
    )
    oracle_addr: str = setting(
        "",
        "Recovery oracle gRPC address: on SIGTERM the executor hands each session it runs off through it "
        "(another executor continues at once). Empty: the sessions wait for their leases to lapse",
    )

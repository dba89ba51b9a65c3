"""Assembles the executor service from its config and dependencies."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgpt.arweave.archiver import Archiver, open_archiver
from agentgpt.attestation import MAX_COLLATERAL_BYTES, MAX_QUOTE_BYTES
from agentgpt.checkpoint_format import ZERO_ADDRESS, Domain
from agentgpt.clients import RecoveryClient, SessionClient, health_probe
from agentgpt.executor.v1 import executor_pb2, executor_pb2_grpc
from agentgpt.ipfs import CheckpointReader, CheckpointWriter, ContentStore, checkpoint_key, open_store
from agentgpt.network import Network, load_network
from agentgpt.runtime.config import ConfigError
from agentgpt.runtime.server import ServiceDefinition, Servicer
from agentgpt.sealing import Keyring
from agentgpt.tasklog import ExecutorKey
from agentgpt.zk.batch import Groth16Worker
from services.executor.actions import ActionRunner
from services.executor.anchoring import AnchorQueue
from services.executor.budget import AgptEscrowRail, LedgerRail, PaymentRail
from services.executor.checkpoints import Checkpointer
from services.executor.config import ExecutorConfig
from services.executor.context import ContextBuilder
from services.executor.decorators import DecoratorDeps, DecoratorRegistry
from services.executor.engine import Engine, EngineConfig, EngineDeps
from services.executor.grpc_port import GrpcSessionPort, session_client
from services.executor.metrics import ExecutorMetrics
from services.executor.planners import BuiltinPlanner, OpenAIPlanner
from services.executor.planners.base import Planner
from services.executor.ports import SessionPort
from services.executor.servicer import ExecutorServicer
from services.executor.transactions import ChainSet, TxIntentRecord
from services.executor.validation import VALIDATORS

log = logging.getLogger("agentgpt.executor")


@dataclass
class ExecutorParts:
    engine: Engine
    chains: ChainSet | None
    store: ContentStore
    key: ExecutorKey
    registry: DecoratorRegistry
    arweave: Archiver | None = None  # reports and filings also go here; close() it with the store


def _domain(network: Network) -> Domain:
    """The EIP-712 domain of checkpoint signatures: the home chain's SessionFactory (zero off chain)."""
    if not network.chains:
        return Domain()
    return Domain(network.home.chain_id, str(network.home.contracts.get("SessionFactory", ZERO_ADDRESS)))


def _planner_factory(config: ExecutorConfig) -> Any:
    def make(model: str) -> Planner:
        if config.model_endpoint and model != "builtin":
            return OpenAIPlanner(
                config.model_endpoint, model, api_key=config.model_api_key, timeout=config.model_timeout
            )
        return BuiltinPlanner(model)

    return make


def _rail_factory(chains: ChainSet | None) -> Any:
    def make(name: str) -> PaymentRail:
        if name == "ledger":
            return LedgerRail()
        if name == "agpt_escrow":
            if chains is None:
                raise KeyError("agpt_escrow needs a network (AGENTGPT_NETWORK)")
            return AgptEscrowRail(*_escrow(chains))
        raise KeyError(name)

    return make


def _escrow(chains: ChainSet) -> tuple[Any, Any]:
    """chargeBudget and the factory's record of what it already paid for (budgetOf)."""

    async def charge(session_id: str, through_seq: int, amount: int, receipt_hash: bytes) -> bytes:
        home = chains.home
        factory = home.contract("SessionFactory")
        data = factory.encode_abi("chargeBudget", args=[int(session_id), through_seq, amount, receipt_hash])

        async def journal(intent: TxIntentRecord) -> None:
            # No durable intent needed: the factory refuses a second charge through the same seq, and the
            # next settlement starts from what the chain says was charged.
            return None

        result = await home.sender.send(to=factory.address, data=bytes.fromhex(data[2:]), journal=journal)
        return result.tx_hash

    async def charged_through(session_id: str) -> int:
        factory = chains.home.contract("SessionFactory")
        _, _, seq = await factory.functions.budgetOf(int(session_id)).call()
        return int(seq)

    return charge, charged_through


def _assignment(chains: ChainSet) -> Any:
    """The home chain's executor and epoch of a session (SessionFactory.getSession)."""

    async def assignment(session_id: str) -> tuple[str, int]:
        factory = chains.home.contract("SessionFactory")
        s = await factory.functions.getSession(int(session_id)).call()
        return str(s[5]), int(s[7])  # Session.executor, Session.epoch

    return assignment


def executor_secret(config: ExecutorConfig) -> str:
    """The executor's private key (hex): AGENTGPT_EXECUTOR_KEY, or one made for this process."""
    return config.executor_key or "0x" + secrets.token_hex(32)


def build_parts(
    config: ExecutorConfig,
    port: SessionPort,
    *,
    store: ContentStore | None = None,
    secret: str | None = None,
) -> ExecutorParts:
    """The engine and everything it needs, without the gRPC server (used by build(), tests and bench).
    `secret` is the executor's private key (hex; default: `executor_secret(config)`)."""
    secret = secret or executor_secret(config)
    key = ExecutorKey(secret)
    network = load_network(config.network)
    if network.chains and not config.executor_key:
        raise ConfigError(
            "AGENTGPT_EXECUTOR_KEY (or AGENTGPT_EXECUTOR_KEY_FILE) is required when AGENTGPT_NETWORK lists chains"
        )
    log.info(
        "executor %s signs as %s%s",
        config.executor_id,
        key.address,
        "" if config.executor_key else " (a random key for this process: off-chain sessions only)",
    )
    chains = (
        ChainSet(
            network,
            config.executor_key,
            stuck_after=config.tx_stuck_after,
            bump_percent=config.tx_bump_percent,
        )
        if network.chains
        else None
    )
    arweave = open_archiver(config)
    if arweave is None:
        log.warning(
            "AGENTGPT_ARWEAVE_GATEWAY is not set: reports and filings are published to IPFS only (their task "
            "results have no arweave_tx)"
        )
    else:
        log.info(
            "reports and filings are also archived to Arweave at %s (wallet %s%s)",
            arweave.gateway_url,
            arweave.address,
            "; mining on each post" if arweave.mine else "",
        )
    if store is None:
        store = open_store(config)
    # Checkpoint bodies are sealed with each session's own data key (it comes with the lease, wrapped to
    # this executor's key); the deployment-wide AGENTGPT_CHECKPOINT_KEY only opens legacy v1 envelopes.
    keyring = Keyring(private_key=secret)
    legacy_key = checkpoint_key(config.checkpoint_key)
    zk = Groth16Worker(config.zk_dir or None)
    registry = DecoratorRegistry(
        DecoratorDeps(
            ofac_list=config.ofac_list,
            kyc_issuers=config.kyc_issuers,
            fee_source=chains,
            gas_retry_after=config.gas_retry_after,
            zk_worker=zk,
        )
    )
    default_rail = config.payment_rail or ("agpt_escrow" if chains else "ledger")
    contexts = ContextBuilder(registry, _planner_factory(config), _rail_factory(chains), default_rail)
    engine_config = EngineConfig(
        executor_id=config.executor_id,
        capacity=config.capacity,
        lease_ttl=config.lease_ttl,
        poll_interval=config.poll_interval,
        checkpoint_interval=config.checkpoint_interval,
        checkpoint_on_idle=config.checkpoint_on_idle,
        task_fee=config.task_fee,
        agpt_per_gas=config.agpt_per_gas,
        task_attempts=config.task_attempts,
        retry_base=config.retry_base,
        retry_max=config.retry_max,
        # on chain, a session's actions need its assigned executor: lease only sessions assigned to us
        claim_address=key.address if network.chains else "",
    )
    deps = EngineDeps(
        port=port,
        contexts=contexts,
        actions=ActionRunner(chains, store, arweave),
        key=key,
        checkpointer=Checkpointer(CheckpointWriter(store), key),
        reader=CheckpointReader(store, key=legacy_key, keyring=keyring),
        keyring=keyring,
        assignment=_assignment(chains) if chains is not None else None,
        home_chain_id=network.home.chain_id if network.chains else 0,
        domain=_domain(network),
        chain_names={k: c.name for c in network.chains for k in (c.name, str(c.chain_id))},
        metrics=ExecutorMetrics(),
        fee_source=chains,
        zk=zk,
    )
    engine = Engine(engine_config, deps)
    if chains is not None:
        deps.anchors = AnchorQueue(
            chains, engine.on_anchored, retry_base=config.anchor_retry_base, metrics=deps.metrics
        )
        deps.metrics.chains(c.name for c in network.chains)
    deps.metrics.sessions.set_function(lambda: len(engine.runners))
    deps.metrics.task_attempts.set_function(
        lambda: max((n for r in engine.runners.values() for n in r.attempts.values()), default=0)
    )
    anchors = deps.anchors
    deps.metrics.anchor_backlog.set_function(lambda: anchors.pending() if anchors is not None else 0)
    return ExecutorParts(engine, chains, store, key, registry, arweave)


def attestation_files(config: ExecutorConfig) -> tuple[bytes, str]:
    """(quote, collateral JSON) from AGENTGPT_ATTESTATION_QUOTE_FILE / _COLLATERAL_FILE; both or neither.
    Verified by the recovery oracle, not here (the executor is the party being checked)."""
    if not config.attestation_quote_file and not config.attestation_collateral_file:
        return b"", ""
    if not (config.attestation_quote_file and config.attestation_collateral_file):
        raise ConfigError(
            "AGENTGPT_ATTESTATION_QUOTE_FILE and AGENTGPT_ATTESTATION_COLLATERAL_FILE go together: set both "
            "(an attested executor) or neither"
        )
    try:
        quote = Path(config.attestation_quote_file).read_bytes()
        collateral = Path(config.attestation_collateral_file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"attestation files: {exc}") from None
    if not 0 < len(quote) <= MAX_QUOTE_BYTES or not 0 < len(collateral) <= MAX_COLLATERAL_BYTES:
        raise ConfigError(
            f"attestation files: the quote must be 1..{MAX_QUOTE_BYTES} bytes and the collateral "
            f"1..{MAX_COLLATERAL_BYTES} (got {len(quote)} and {len(collateral)})"
        )
    return quote, collateral


async def build(
    config: ExecutorConfig, session: SessionClient | None = None, store: ContentStore | None = None
) -> ServiceDefinition:
    session = session or session_client(config.session_addr, f"executor:{config.executor_id}")
    secret = executor_secret(config)
    port = GrpcSessionPort(session, public_key=ExecutorKey(secret).public_key)
    parts = build_parts(config, port, store=store, secret=secret)
    engine = parts.engine
    servicer = ExecutorServicer(
        engine, address=parts.key.address, started_at=time.time(), attestation=attestation_files(config)
    )
    oracle: RecoveryClient | None = None
    if config.oracle_addr:
        oracle = RecoveryClient(config.oracle_addr, identity=f"executor:{config.executor_id}")
        client = oracle

        async def handoff(session_id: str) -> None:
            await client.recover_session(
                session_id, f"handoff: executor {config.executor_id} is shutting down", handoff=True
            )

        engine.deps.handoff = handoff
    background = []
    if config.claim_sessions:
        background.append(engine.run)
    if engine.deps.anchors is not None:
        background.append(engine.deps.anchors.run)
    probes: dict[str, Any] = {"session_service": health_probe("session service", session)}

    async def ipfs_probe() -> None:
        await parts.store.probe()

    probes["ipfs"] = ipfs_probe
    if parts.chains is not None:
        chains = parts.chains

        async def chain_probe() -> None:
            for info in chains.network.chains:
                if await chains.get(info.name).w3.eth.chain_id != info.chain_id:
                    raise RuntimeError(f"{info.rpc_url} is not chain {info.chain_id}")

        probes["chains"] = chain_probe

    async def close() -> None:
        await engine.stop()
        await parts.store.close()
        if parts.arweave is not None:
            await parts.arweave.close()
        if parts.chains is not None:
            await parts.chains.close()
        if oracle is not None:
            await oracle.close()

    async def drain() -> None:
        await engine.drain(timeout=max(1.0, config.lease_ttl / 2))

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
        probes=probes,
        background=background,
        on_drain=[drain],
        on_stop=[close, session.close],
        registry=engine.deps.metrics.registry,
    )

"""Assembles the recovery oracle from its config and dependencies."""

from __future__ import annotations

import os
import socket
from typing import Any

from prometheus_client import CollectorRegistry

from agentgpt.chain.sender import KeySender
from agentgpt.clients import ClientMetrics, IndexerClient, SessionClient, health_probe
from agentgpt.ipfs import CheckpointReader, ContentStore, checkpoint_key, open_store
from agentgpt.network import load_network
from agentgpt.recovery.v1 import recovery_pb2, recovery_pb2_grpc
from agentgpt.runtime.config import ConfigError
from agentgpt.runtime.server import ServiceDefinition, Servicer
from agentgpt.verify import CheckpointVerifier
from services.recovery_oracle.claims import ClaimJudge, RegistryPenalties
from services.recovery_oracle.config import RecoveryConfig
from services.recovery_oracle.detector import Detector
from services.recovery_oracle.executors import ExecutorPool
from services.recovery_oracle.metrics import RecoveryMetrics
from services.recovery_oracle.protocol import ProtocolConfig, Recoverer
from services.recovery_oracle.servicer import RecoveryServicer
from services.recovery_oracle.store import RecoveryStore
from services.recovery_oracle.validation import VALIDATORS


async def build(
    config: RecoveryConfig,
    session: SessionClient | None = None,
    indexer: IndexerClient | None = None,
    store: ContentStore | None = None,
) -> ServiceDefinition:
    store = store or open_store(config)
    reader = CheckpointReader(store, key=checkpoint_key(config.checkpoint_key))
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    session = session or SessionClient(config.session_addr, metrics=metrics, identity="recovery_oracle")
    indexer = indexer or IndexerClient(config.indexer_addr, metrics=metrics, identity="recovery_oracle")
    verifier = CheckpointVerifier(indexer, reader)
    network = load_network(config.network)
    sender: KeySender | None = None
    if network.chains and config.oracle_key:
        if "ExecutorRegistry" not in network.home.contracts:
            raise ConfigError(f"AGENTGPT_NETWORK: chain {network.home.name} has no ExecutorRegistry address")
        try:
            sender = KeySender(network.home, config.oracle_key)
        except ValueError:
            raise ConfigError("AGENTGPT_ORACLE_KEY is not a valid private key") from None
    claims = ClaimJudge(
        verifier,
        store,
        reader,
        RegistryPenalties(sender) if sender is not None else None,
        registry,
        attempts=config.claim_attempts,
        window=config.claim_window,
    )

    bonded: Any = None
    if sender is not None:
        registry_contract = sender.contract("ExecutorRegistry")

        async def is_bonded(address: str) -> bool:
            return bool(await registry_contract.functions.isBonded(address).call())

        bonded = is_bonded

    store_db = await RecoveryStore.open(config.database_url)
    recovery_metrics = RecoveryMetrics(registry)
    detector: Detector | None = None

    async def executor_dead(address: str) -> None:
        if detector is not None:
            await detector.executor_dead(address)

    pool = ExecutorPool(
        config.executor_addrs,
        interval=config.probe_interval,
        failures=config.probe_failures,
        on_dead=executor_dead,
        bonded=bonded,
    )
    recoverer = Recoverer(
        store_db,
        session,
        verifier,
        pool,
        recovery_metrics,
        ProtocolConfig(
            holder=config.replica_id or f"{socket.gethostname()}:{os.getpid()}",
            lease=config.recovery_lease,
            give_up_after=config.give_up_after,
        ),
    )
    detector = Detector(
        session,
        recoverer,
        store_db,
        pool,
        recovery_metrics,
        interval=config.detect_interval,
        grace=config.detect_grace,
        patience=config.detect_patience,
    )

    async def close_sender() -> None:
        if sender is not None:
            await sender.close()

    return ServiceDefinition(
        name="recovery_oracle",
        servicers=[
            Servicer(
                RecoveryServicer(verifier, claims, recoverer, store_db),
                recovery_pb2_grpc.add_RecoveryServiceServicer_to_server,
                recovery_pb2.DESCRIPTOR.services_by_name["RecoveryService"],
            )
        ],
        validators=VALIDATORS,
        probes={
            "session_service": health_probe("session service", session),
            "indexer": health_probe("indexer", indexer),
            "ipfs": store.probe,
            "recovery_store": store_db.ping,
        },
        background=[pool.run, detector.run],
        on_stop=[
            recoverer.stop,
            pool.close,
            session.close,
            indexer.close,
            store.close,
            store_db.close,
            close_sender,
        ],
        registry=registry,
    )

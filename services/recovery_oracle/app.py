"""Assembles the recovery oracle from its config and dependencies."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agentgpt.chain.sender import KeySender
from agentgpt.clients import ClientMetrics, IndexerClient, SessionClient, health_probe
from agentgpt.ipfs import CheckpointReader, ContentStore, checkpoint_key, open_store
from agentgpt.network import load_network
from agentgpt.recovery.v1 import recovery_pb2, recovery_pb2_grpc
from agentgpt.runtime.config import ConfigError
from agentgpt.runtime.server import ServiceDefinition, Servicer
from services.recovery_oracle.claims import ClaimJudge, RegistryPenalties
from services.recovery_oracle.config import RecoveryConfig
from services.recovery_oracle.servicer import RecoveryServicer
from services.recovery_oracle.validation import VALIDATORS
from services.recovery_oracle.verify import CheckpointVerifier


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

    async def close_sender() -> None:
        if sender is not None:
            await sender.close()

    return ServiceDefinition(
        name="recovery_oracle",
        servicers=[
            Servicer(
                RecoveryServicer(verifier, claims),
                recovery_pb2_grpc.add_RecoveryServiceServicer_to_server,
                recovery_pb2.DESCRIPTOR.services_by_name["RecoveryService"],
            )
        ],
        validators=VALIDATORS,
        probes={
            "session_service": health_probe("session service", session),
            "indexer": health_probe("indexer", indexer),
            "ipfs": store.probe,
        },
        on_stop=[session.close, indexer.close, store.close, close_sender],
        registry=registry,
    )

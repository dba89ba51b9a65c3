"""Assembles the recovery oracle from its config and dependencies."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from agentgpt.attestation import TCB_STATUSES, Attestation, Policy, Verifier
from agentgpt.chain.sender import KeySender
from agentgpt.clients import ClientMetrics, IndexerClient, SessionClient, health_probe
from agentgpt.errors import FailedPrecondition, RpcError, Unavailable
from agentgpt.ipfs import CheckpointReader, ContentStore, KeySource, checkpoint_key, open_store
from agentgpt.network import load_network
from agentgpt.recovery.v1 import recovery_pb2, recovery_pb2_grpc
from agentgpt.runtime.config import ConfigError
from agentgpt.runtime.server import ServiceDefinition, Servicer
from agentgpt.sealing import Keyring, SessionKey
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


def session_key_source(session: SessionClient, keyring: Keyring) -> KeySource:
    """Where the verifier's reader gets a session's checkpoint data keys: the session service's
    GetSessionKeys, wrapped to this oracle's key and opened with it."""
    public_key = keyring.public_key
    assert public_key is not None

    async def keys(session_id: str) -> list[SessionKey]:
        try:
            resp = await session.get_session_keys(session_id, public_key)
        except RpcError as exc:
            if exc.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    f"session service: the keys of session {session_id}: {exc.details}"
                ) from None
            raise FailedPrecondition(
                f"the session service refused the checkpoint keys of session {session_id}: {exc.details}"
            ) from None
        return [SessionKey(k.epoch, keyring.unwrap(k.wrapped)) for k in resp.keys]

    return keys


def attestation_verifier(config: RecoveryConfig) -> Callable[[bytes, str, str], Attestation]:
    """Verifies an executor's DCAP quote with the AGENTGPT_ATTESTATION_* settings, accepting every TCB
    status (a session's spec says which it accepts)."""
    verifier, any_tcb = Verifier.of(config), Policy.of(TCB_STATUSES)

    def check(quote: bytes, collateral: str, address: str) -> Attestation:
        return verifier.check(quote, collateral, address, any_tcb)

    return check


async def build(
    config: RecoveryConfig,
    session: SessionClient | None = None,
    indexer: IndexerClient | None = None,
    store: ContentStore | None = None,
) -> ServiceDefinition:
    store = store or open_store(config)
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    session = session or SessionClient(config.session_addr, metrics=metrics, identity="recovery_oracle")
    # Sealed checkpoint bodies open with the session's data keys, which the session service wraps to the
    # oracle's key (AGENTGPT_ORACLE_KEY; without it a key made for this process: the keys are asked for
    # again after a restart); AGENTGPT_CHECKPOINT_KEY opens the legacy v1 envelopes.
    keyring = Keyring(private_key=config.oracle_key or secrets.token_bytes(32))
    reader = CheckpointReader(
        store,
        key=checkpoint_key(config.checkpoint_key),
        keyring=keyring,
        key_source=session_key_source(session, keyring),
    )
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
        verifier=attestation_verifier(config),
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

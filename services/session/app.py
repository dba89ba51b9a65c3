"""Assembles the session service from its config and dependencies."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry

from agentgpt.arweave.archiver import open_archiver
from agentgpt.attestation import Verifier
from agentgpt.ipfs import ContentStore, open_store
from agentgpt.lifecycle import Durations
from agentgpt.network import Network, load_network
from agentgpt.runtime.config import ConfigError
from agentgpt.runtime.server import ServiceDefinition, Servicer
from agentgpt.session.v1 import session_pb2, session_pb2_grpc
from services.session.attest import AttestationCheck
from services.session.chain import SessionChain, Web3SessionChain
from services.session.chain_sync import ChainSync
from services.session.clock import Clock, system_clock
from services.session.config import SessionConfig
from services.session.control import SessionControl
from services.session.keys import KeyCustody
from services.session.memory import InMemorySessionChain
from services.session.metadata import MetadataSync
from services.session.servicer import SessionServicer
from services.session.store import SessionDB
from services.session.timers import LifecycleTimers
from services.session.validation import Deployment, validators

log = logging.getLogger("agentgpt.session")

CHAIN_RETRY_CAP = 60.0  # seconds: the longest a recovered chain waits for a pending expiry to be retried


def _chain(config: SessionConfig, network: Network) -> tuple[SessionChain, int]:
    if not network.chains:
        log.warning("no network manifest: sessions are minted on an in-memory chain (development only)")
        return InMemorySessionChain(chain_id=config.auth_chain_id), config.auth_chain_id
    try:
        home = network.chain(config.home_chain) if config.home_chain else network.home
    except KeyError as exc:
        raise ConfigError(f"AGENTGPT_HOME_CHAIN: {exc}") from None
    factory = home.contracts.get("SessionFactory")
    if not factory:
        raise ConfigError(f"AGENTGPT_NETWORK: chain {home.name} has no SessionFactory address")
    if not config.relayer_key:
        raise ConfigError("AGENTGPT_RELAYER_KEY is required when a network is configured")
    try:
        chain = Web3SessionChain(
            home.rpc_url, home.chain_id, factory, config.relayer_key, deploy_block=home.deploy_block
        )
    except ValueError:
        raise ConfigError("AGENTGPT_RELAYER_KEY is not a valid private key") from None
    return chain, home.chain_id


async def build(
    config: SessionConfig,
    *,
    db: SessionDB | None = None,
    chain: SessionChain | None = None,
    archive: ContentStore | None = None,
    registry: CollectorRegistry | None = None,
    clock: Clock = system_clock,
) -> ServiceDefinition:
    """The session service. Tests pass their own chain/archive (and may pass a clock); otherwise they come
    from the config. `clock` is the one clock of the control plane, SessionDB and the validators."""
    if min(config.draft_ttl, config.active_ttl, config.paused_ttl) <= 0:
        raise ConfigError("AGENTGPT_DRAFT_TTL/ACTIVE_TTL/PAUSED_TTL must be > 0 seconds")
    if config.metadata_interval < 0:
        raise ConfigError("AGENTGPT_METADATA_INTERVAL must be >= 0 seconds (0: off)")
    # the chains a spec may name (and anchor on) are the manifest's; none configured: any name
    network = load_network(config.network)
    deployment = Deployment(network=network if network.chains else None)
    if chain is None:
        chain, auth_chain_id = _chain(config, network)
    else:
        auth_chain_id = chain.chain_id
    if config.arweave_complete_window <= 0:
        raise ConfigError("AGENTGPT_ARWEAVE_COMPLETE_WINDOW must be > 0 seconds")
    arweave = open_archiver(config)
    if arweave is None:
        log.warning(
            "AGENTGPT_ARWEAVE_GATEWAY is not set: completed sessions' event logs are archived to IPFS only "
            "(their completed event has no log_arweave_tx)"
        )
    else:
        log.info(
            "completed sessions' event logs are archived to IPFS and to Arweave at %s (wallet %s%s)",
            arweave.gateway_url,
            arweave.address,
            "; mining on each post" if arweave.mine else "",
        )
    if archive is None:
        archive = open_store(config)
    own_db = db is None
    if db is None:
        db = await SessionDB.open(config.database_url, clock=clock)
    registry = registry or CollectorRegistry()
    control = SessionControl(
        db,
        chain,
        archive,
        durations=Durations(config.draft_ttl, config.active_ttl, config.paused_ttl),
        auth_chain_id=auth_chain_id,
        default_executor=config.default_executor,
        attestation=AttestationCheck(Verifier.of(config)),
        receipt_timeout=config.receipt_timeout,
        trust_service_header=config.trust_service_header,
        # on-chain follow-ups (expire after a timer fired) are retried from the timer loop: first after
        # one tick, backing off to at most CHAIN_RETRY_CAP while the chain is unreachable
        chain_retry_base=config.timer_interval,
        chain_retry_cap=max(CHAIN_RETRY_CAP, config.timer_interval),
        clock=clock,
        deployment=deployment,
        # checkpoint data keys are kept wrapped to the relayer key (a key for this process without one)
        custody=KeyCustody(config.relayer_key or None),
        arweave=arweave,
        arweave_window=config.arweave_complete_window,
    )
    timers = LifecycleTimers(control, config.timer_interval, registry)
    background = [timers.run]
    sync: ChainSync | None = None
    if network.chains and config.relayer_key:
        home = network.chain(config.home_chain) if config.home_chain else network.home
        sync = ChainSync(
            db,
            network,
            home,
            config.relayer_key,
            registry,
            interval=config.chain_sync_interval,
            receipt_timeout=config.receipt_timeout,
            notify=control.bus.notify,
        )
        control.chain_sync = sync
        background.append(sync.run)
    if network.chains and config.metadata_interval > 0:  # (a real home chain: its NFTs are seen)
        metadata = MetadataSync(
            db,
            chain,
            archive,
            registry,
            interval=config.metadata_interval,
            receipt_timeout=config.receipt_timeout,
        )
        control.bus.listeners.append(metadata.mark)
        background.append(metadata.run)

    async def close() -> None:
        if sync is not None:
            await sync.close()
        closer: Any = getattr(chain, "close", None)
        if closer is not None:
            await closer()
        await archive.close()
        if arweave is not None:
            await arweave.close()
        if own_db:
            await db.close()

    async def archive_probe() -> None:
        await archive.probe()

    definition = ServiceDefinition(
        name="session",
        servicers=[
            Servicer(
                SessionServicer(control),
                session_pb2_grpc.add_SessionServiceServicer_to_server,
                session_pb2.DESCRIPTOR.services_by_name["SessionService"],
            )
        ],
        validators=validators(deployment, clock),
        probes={"sessiondb": db.ping, "home_chain": chain.ping, "ipfs": archive_probe},
        registry=registry,
        background=background,
        on_stop=[close],
    )
    definition.control = control  # type: ignore[attr-defined]  # for tests and the CLI's local mode
    return definition

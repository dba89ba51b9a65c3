"""SessionControl: the control plane's planes composed over one commit core, as the service (app.py),
the servicer, the timers and the tests use them."""

from __future__ import annotations

from agentgpt.arweave.archiver import Archiver
from agentgpt.ipfs import ContentStore
from agentgpt.lifecycle import Durations
from services.session.attest import AttestationCheck
from services.session.chain import SessionChain
from services.session.chain_sync import ChainSync
from services.session.clock import Clock, system_clock
from services.session.control.archive import DEFAULT_WINDOW, LogArchive
from services.session.control.callers import Callers
from services.session.control.commands import Commands
from services.session.control.core import Core, EventBus
from services.session.control.expiry import Expiry
from services.session.control.final import FinalAnchors
from services.session.control.reads import Reads
from services.session.control.relay import Relay
from services.session.control.restore import Restore
from services.session.control.work import Work
from services.session.keys import KeyCustody
from services.session.store import SessionDB
from services.session.validation import Deployment


class SessionControl:
    def __init__(
        self,
        db: SessionDB,
        chain: SessionChain,
        archive: ContentStore,
        *,
        durations: Durations,
        auth_chain_id: int,
        default_executor: str = "",
        attestation: AttestationCheck | None = None,
        receipt_timeout: float = 60.0,
        trust_service_header: bool = False,
        chain_retry_base: float = 1.0,
        chain_retry_cap: float = 60.0,
        clock: Clock = system_clock,
        deployment: Deployment | None = None,
        chain_sync: ChainSync | None = None,
        custody: KeyCustody | None = None,
        arweave: Archiver | None = None,
        arweave_window: float = DEFAULT_WINDOW,
    ) -> None:
        self.core = Core(
            db,
            chain,
            durations=durations,
            clock=clock,
            receipt_timeout=receipt_timeout,
            deployment=deployment,
            custody=custody if custody is not None else KeyCustody(),
        )
        self.core.chain_sync = chain_sync
        self.archive = archive  # the content store the event logs go to
        self.callers = Callers(
            auth_chain_id=auth_chain_id, trust_service_header=trust_service_header, clock=clock
        )
        self.relay = Relay(self.core, self.callers)
        # completed logs go to IPFS (`archive`) and, with a gateway configured, to Arweave too
        self.log_archive = LogArchive(db, archive, arweave, arweave_window=arweave_window)
        self.commands = Commands(
            self.core,
            self.relay,
            self.log_archive,
            FinalAnchors(self.core, archive),
            default_executor=default_executor,
            attestation=attestation,
        )
        self.work = Work(self.core, self.callers, self.relay)
        self.reads = Reads(self.core, self.callers)
        self.restore = Restore(self.core, self.callers, archive)
        self.expiry = Expiry(self.core, retry_base=chain_retry_base, retry_cap=chain_retry_cap)

    @property
    def db(self) -> SessionDB:
        return self.core.db

    @property
    def chain(self) -> SessionChain:
        return self.core.chain

    @property
    def bus(self) -> EventBus:
        return self.core.bus

    @property
    def clock(self) -> Clock:
        return self.core.clock

    @property
    def chain_sync(self) -> ChainSync | None:
        """Writer grants and budget audits (None without a network)."""
        return self.core.chain_sync

    @chain_sync.setter
    def chain_sync(self, sync: ChainSync | None) -> None:
        self.core.chain_sync = sync

    # ------------------------------------------------------------------ the background loop's steps

    async def reconcile(self) -> int:
        return await self.relay.reconcile()

    async def fire_due(self) -> int:
        return await self.expiry.fire_due()

    async def settle_chain_expiries(self) -> int:
        return await self.expiry.settle_chain_expiries()

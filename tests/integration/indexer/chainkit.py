"""Test helpers for the indexer's chain tests: a fresh anvil with the contracts deployed and funded,
transactions that emit the events the indexer follows, and a differential check against a rebuild."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from web3 import Web3

from agentgpt.chain.deploy import deploy_all
from agentgpt.network import ChainInfo
from apps.localnet.anvil import DEV_PRIVATE_KEYS, AnvilNode
from services.indexer.follower import ChainFollower, FollowerTuning
from services.indexer.metrics import IndexerMetrics
from services.indexer.rpc import ChainRpc
from services.indexer.store import IndexerStore
from tests.contracts.chain import E18, Chain

MIN_BOND = 100 * E18


@dataclass
class DeployedChain:
    node: AnvilNode
    chain: Chain

    @property
    def rpc_url(self) -> str:
        return self.node.rpc_url

    def info(
        self,
        *,
        finality_window: int = 8,
        confirmations: int = 0,
        rpc_url: str | None = None,
        name: str = "home",
    ) -> ChainInfo:
        d = self.chain.deployment
        return ChainInfo(
            name=name,
            chain_id=d.chain_id,
            rpc_url=rpc_url or self.rpc_url,
            deploy_block=d.deploy_block,
            contracts=dict(d.contracts),
            finality_window=finality_window,
            confirmations=confirmations,
        )

    def head(self) -> int:
        return int(self.chain.w3.eth.block_number)

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return self.chain.rpc(method, params)

    def mine(self, n: int = 1) -> None:
        self.rpc("anvil_mine", [hex(n)])

    def session_with_anchors(self, anchors: int = 1) -> int:
        """Create + activate a session, anchor `anchors` checkpoints, charge budget once."""
        c = self.chain
        sid = c.active_session()
        for seq in range(1, anchors + 1):
            cid = bytes([1, 0x71, 0x12, 0x20]) + bytes([seq]) * 32
            c.tx(c.factory.functions.anchorCheckpoint(sid, seq, cid, bytes([seq]) * 32), c.actors.executor)
        c.tx(c.factory.functions.chargeBudget(sid, 1, 5 * E18, b"\x33" * 32), c.actors.executor)
        return sid


async def deploy_chain(chain_id: int = 31337) -> DeployedChain:
    node = AnvilNode(chain_id=chain_id).start()
    try:
        dep = await deploy_all(node.rpc_url, DEV_PRIVATE_KEYS[0], min_bond=MIN_BOND)
        w3 = Web3(Web3.HTTPProvider(node.rpc_url, request_kwargs={"timeout": 30}))
        c = Chain(w3, dep, DEV_PRIVATE_KEYS)
        a = c.actors
        for who in (a.owner, a.executor, a.executor2):
            c.tx(c.agpt.functions.mint(who, 100_000 * E18), a.admin)
        for ex in (a.executor, a.executor2):
            c.tx(c.agpt.functions.approve(c.registry.address, MIN_BOND), ex)
            c.tx(c.registry.functions.bond(MIN_BOND), ex)
        c.tx(c.agpt.functions.approve(c.factory.address, 2**255), a.owner)
        return DeployedChain(node, c)
    except BaseException:
        node.stop()
        raise


class IndexerUnderTest:
    """A follower + store in this process (no gRPC), for driving step by step."""

    def __init__(
        self, store: IndexerStore, follower: ChainFollower, rpc: ChainRpc, registry: CollectorRegistry
    ) -> None:
        self.store, self.follower, self.rpc, self.registry = store, follower, rpc, registry

    @classmethod
    async def open(cls, info: ChainInfo, url: str | None = None, **tuning: Any) -> IndexerUnderTest:
        if url is None:
            url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='indexer-')}/indexer.db"
        store = await IndexerStore.open(url)
        registry = CollectorRegistry()
        rpc = ChainRpc(info.rpc_url, timeout=tuning.pop("rpc_timeout", 5.0))
        follower = ChainFollower(
            info, store, rpc, IndexerMetrics(registry), FollowerTuning(**{"poll_interval": 0.05, **tuning})
        )
        await follower.load()
        return cls(store, follower, rpc, registry)

    async def close(self) -> None:
        await self.rpc.close()
        await self.store.close()

    def metric(self, name: str, **labels: str) -> float:
        return float(self.registry.get_sample_value(name, labels) or 0.0)

    async def snapshot(self, up_to: int | None = None) -> list[tuple[Any, ...]]:
        return await self.store.canonical_snapshot(
            self.follower.chain.chain_id, up_to if up_to is not None else self.follower.next_block - 1
        )


async def rebuild_snapshot(info: ChainInfo, up_to: int) -> list[tuple[Any, ...]]:
    """Index the chain from its start into a new database and return the canonical events up to `up_to`."""
    fresh = await IndexerUnderTest.open(info)
    try:
        await fresh.follower.catch_up()
        assert fresh.follower.next_block - 1 >= up_to
        return await fresh.snapshot(up_to)
    finally:
        await fresh.close()


def db_path_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'indexer.db'}"


def emit_sessions(rpc_url: str, chain: Chain, sessions: int, per_block: int) -> int:
    """Create `sessions` sessions (3 followed events each: Transfer, SessionCreated, SessionStateChanged),
    `per_block` per block, sent as JSON-RPC batches with automine off. Returns the head afterwards."""
    owner = chain.actors.owner
    data = chain.factory.encode_abi("createSession", [b"\x44" * 32, 1])
    nonce = int(chain.w3.eth.get_transaction_count(Web3.to_checksum_address(owner)))
    chain.rpc("evm_setAutomine", [False])
    try:
        sent = 0
        while sent < sessions:
            n = min(per_block, sessions - sent)
            batch = [
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "eth_sendTransaction",
                    "params": [
                        {
                            "from": owner,
                            "to": chain.factory.address,
                            "data": data,
                            "gas": hex(600_000),
                            "nonce": hex(nonce + sent + i),
                        }
                    ],
                }
                for i in range(n)
            ]
            req = urllib.request.Request(
                rpc_url, json.dumps(batch).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                answers = json.loads(resp.read())
            errors = [a["error"] for a in answers if "error" in a]
            assert not errors, errors[:3]
            chain.rpc("evm_mine")
            sent += n
    finally:
        chain.rpc("evm_setAutomine", [True])
    return int(chain.w3.eth.block_number)

"""ChainSync's scheduling: what a kick costs, what a full pass asks the chain, which grants it remembers.

The chains are fakes counting their calls (the grants and audits against real chains are driven by the
end-to-end tests: tests/e2e/test_chain_consistency.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from prometheus_client import CollectorRegistry

from agentgpt.lifecycle import SessionState
from agentgpt.network import ChainInfo, Network
from services.session import chain_sync
from services.session.chain_sync import ChainSync

HOME = ChainInfo(
    name="arbitrum",
    chain_id=31337,
    rpc_url="http://127.0.0.1:1",
    contracts={"SessionFactory": "0x" + "fa" * 20},
)
SECOND = ChainInfo(name="polygon", chain_id=31338, rpc_url="http://127.0.0.1:2")
EXECUTOR = "0x" + "ab" * 20


@dataclass(frozen=True)
class Rec:
    session_id: str
    executor: str = EXECUTOR
    lifecycle_state: SessionState = SessionState.ACTIVE
    spec: Any = None

    def __post_init__(self) -> None:
        if self.spec is None:
            object.__setattr__(self, "spec", {"chains": ["arbitrum", "polygon"]})


class Call:
    def __init__(self, result: Any, log: list[str], what: str) -> None:
        self.result, self.log, self.what = result, log, what

    async def call(self) -> Any:
        self.log.append(self.what)
        return self.result


class FakeChain:
    """streamOf answers the writer granted so far; grantWriter is 'mined' at once; budgetOf agrees."""

    def __init__(self, info: ChainInfo) -> None:
        self.info = info
        self.writers: dict[int, str] = {}
        self.calls: list[str] = []
        fns = SimpleNamespace(
            streamOf=lambda chain_id, sid: Call(
                (self.writers.get(sid, "0x" + "00" * 20), 0), self.calls, f"streamOf {sid}"
            ),
            grantWriter=lambda chain_id, sid, who: ("grant", sid, who),
        )
        self.contract_ = SimpleNamespace(functions=fns)
        self.w3 = SimpleNamespace(eth=SimpleNamespace(call=self.eth_call))

    async def eth_call(self, tx: dict[str, Any]) -> bytes:
        """budgetOf(session) (the only bare eth_call): budget 100, spent 0, charged through seq 0."""
        assert tx["to"] == to_checksum_address(self.info.contracts["SessionFactory"])
        assert tx["data"][:4] == chain_sync.BUDGET_OF
        self.calls.append(f"budgetOf {int.from_bytes(tx['data'][4:], 'big')}")
        return encode(["uint256", "uint256", "uint64"], [100, 0, 0])

    def contract(self, name: str) -> Any:
        return self.contract_

    async def transact(self, fn: Any, timeout: float) -> bytes:
        _, sid, who = fn
        self.calls.append(f"grant {sid}")
        self.writers[sid] = who
        return b"\x01" * 32


class FakeDB:
    def __init__(self, recs: list[Rec]) -> None:
        self.recs = {r.session_id: r for r in recs}
        self.listed = 0

    async def list_sessions(self, **kw: Any) -> tuple[list[Rec], str]:
        self.listed += 1
        return list(self.recs.values()), ""

    async def get(self, sid: str) -> Rec | None:
        return self.recs.get(sid)

    async def require(self, sid: str) -> Rec:
        return self.recs[sid]

    async def task_costs_through(self, sid: str, through: int) -> int:
        return 0

    async def commit(self, change: Any) -> None:
        pass


def make(recs: list[Rec]) -> tuple[ChainSync, FakeDB, FakeChain, FakeChain]:
    db = FakeDB(recs)
    sync = ChainSync(db, Network(chains=(HOME, SECOND)), HOME, "0x" + "11" * 32, CollectorRegistry())  # type: ignore[arg-type]
    home, second = FakeChain(HOME), FakeChain(SECOND)
    sync.chains = {"arbitrum": home, "polygon": second}  # type: ignore[dict-item]
    return sync, db, home, second


async def test_a_full_pass_grants_once_and_then_asks_the_chain_only_where_the_executor_changed() -> None:
    sync, db, home, second = make([Rec("1"), Rec("2")])
    await sync.sync_once()
    assert second.calls == ["streamOf 1", "grant 1", "streamOf 2", "grant 2"]
    assert home.calls == ["budgetOf 1", "budgetOf 2"]  # the home chain needs no grant; both audited

    second.calls.clear()
    await sync.sync_once()
    assert second.calls == []  # both grants remembered: nothing asked of the secondary chain

    db.recs["2"] = replace(db.recs["2"], executor="0x" + "cd" * 20)
    await sync.sync_once()
    assert second.calls == ["streamOf 2", "grant 2"]


async def test_grants_are_asked_again_every_reverify_passes() -> None:
    sync, _, _, second = make([Rec("1")])
    for _ in range(chain_sync.REVERIFY_PASSES):
        await sync.sync_once()
    # pass 1 granted, passes 2..N-1 remembered it, pass N asked the chain again (and found it granted)
    assert second.calls == ["streamOf 1", "grant 1", "streamOf 1"]


async def test_a_kick_grants_that_session_only_and_audits_nothing() -> None:
    recs = [Rec(str(i)) for i in range(1, 51)]
    sync, db, home, second = make(recs)
    sync.interval = 3600.0
    task = asyncio.create_task(sync.run())
    try:
        for _ in range(100):  # the first pass is a full one
            await asyncio.sleep(0.01)
            if len(home.calls) == 50:
                break
        assert len(second.calls) == 100 and db.listed == 1
        home.calls.clear()
        second.calls.clear()
        db.recs["51"] = Rec("51")
        sync.kick("51")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if second.calls:
                break
        await asyncio.sleep(0.05)
        assert second.calls == ["streamOf 51", "grant 51"]
        assert home.calls == [] and db.listed == 1  # no pass over the 50 others, no audit
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_kick_without_a_session_runs_a_full_pass() -> None:
    sync, db, home, _ = make([Rec("1")])
    sync.interval = 3600.0
    task = asyncio.create_task(sync.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if db.listed == 1:
                break
        sync.kick()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if db.listed == 2:
                break
        assert db.listed == 2 and home.calls.count("budgetOf 1") == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

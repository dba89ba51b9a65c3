"""Completing a session archives its event log to Arweave as well as IPFS, on a REAL arlocal and a REAL IPFS
node, through the session service's gRPC API (the component harness): the transaction reads back verified,
with the archive's tags and the very bytes of the IPFS archive, and the final event carries both ids.
An Arweave gateway that is down makes CompleteSession UNAVAILABLE with nothing done; asked again once the
gateway is back, the session completes once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from agentgpt.arweave import ArweaveClient, Wallet, archive_tags
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.ipfs import KuboStore
from agentgpt.runtime.config import load
from agentgpt.runtime.server import RunningService
from agentgpt.session.v1 import session_pb2 as pb
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from apps.localnet.arweave import ArlocalNode
from apps.localnet.ports import free_port
from services.session.app import build
from services.session.config import SessionConfig
from services.session.memory import InMemorySessionChain
from tests.component.session.harness import Harness, Owner, new_key, server_config

pytestmark = [pytest.mark.ipfs]

EXECUTOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
WINDOW = 2.0  # AGENTGPT_ARWEAVE_COMPLETE_WINDOW of these services: a down gateway is given up on quickly

Start = Callable[..., Awaitable[Harness]]


@pytest_asyncio.fixture
async def start(tmp_path: Path, ipfs_api: str, arweave_wallet: Wallet) -> AsyncIterator[Start]:
    """Start session services on the real IPFS node, archiving to the Arweave gateway they are given."""
    wallet_path = arweave_wallet.save(tmp_path / "arweave-wallet.json")
    running: list[tuple[Harness, RunningService, InMemorySessionChain]] = []

    async def make(gateway: str) -> Harness:
        config = load(
            SessionConfig,
            env={
                "AGENTGPT_ARWEAVE_GATEWAY": gateway,
                "AGENTGPT_ARWEAVE_WALLET_PATH": str(wallet_path),
                "AGENTGPT_ARWEAVE_MINE": "true",
                "AGENTGPT_ARWEAVE_RETRIES": "0",
                "AGENTGPT_ARWEAVE_TIMEOUT": "5",
            },
            database_url=f"sqlite+aiosqlite:///{tmp_path / f'sessions-{len(running)}.db'}",
            ipfs_api=ipfs_api,
            timer_interval=3600,
            arweave_complete_window=WINDOW,
        )
        chain = InMemorySessionChain()
        service = RunningService(await build(config, chain=chain), server_config())
        await service.start()
        h = Harness(service)
        running.append((h, service, chain))
        return h

    try:
        yield make
    finally:
        for h, service, _ in running:
            await h.close()
            await service.stop()


def chain_of(h: Harness) -> InMemorySessionChain:
    chain = h.control.chain
    assert isinstance(chain, InMemorySessionChain)
    return chain


def complete_request(owner: Owner, s: pb.Session, key: str) -> pb.CompleteSessionRequest:
    """A CompleteSession request as an owner signs it: a fresh nonce each time, the idempotency key given."""
    req = owner.sign(pb.CompleteSessionRequest(idempotency_key=key, session_id=s.session_id))
    return owner.chain_sign("complete", s, req)  # type: ignore[no-any-return]


async def events_of(h: Harness, session_id: str) -> list[Any]:
    return list(await h.control.db.events_after(session_id, 0, limit=10_000))


async def assert_archived(
    h: Harness, gateway: str, wallet: Wallet, session_id: str, done: pb.CompleteSessionResponse
) -> str:
    """The final event names the log's CID and Arweave tx; the tx verifies, carries the archive's tags and
    the bytes the IPFS node serves under the CID. Returns the tx id."""
    evs = await events_of(h, session_id)
    final = evs[-1]
    assert final.type == "completed" and [e.type for e in evs].count("completed") == 1
    data = json.loads(final.data_json)
    assert data["log_cid"] == done.log_cid
    tx_id = data["log_arweave_tx"]
    async with KuboStore(h.control.archive.endpoint) as ipfs:
        on_ipfs = await ipfs.get(done.log_cid)  # verified against the CID
    async with ArweaveClient(gateway) as reader:
        tx = await reader.read(tx_id)  # verified: id, signature, data_root
        found = await reader.find({"Kind": "event-log", "Session-Id": session_id, "Chain-Id": "31337"})
    assert tx.data == on_ipfs
    assert tx.owner_address == wallet.address
    archived = json.loads(on_ipfs)
    # seq: the number of events archived (all but the "completed" event, written after with the ids)
    assert len(archived["events"]) == len(evs) - 1
    assert tx.tag_map == archive_tags(
        kind="event-log", session_id=session_id, chain_id=31337, seq=len(evs) - 1
    )
    assert archived["archive_version"] == 2 and archived["head"] == "0x" + evs[-2].hash.hex()
    assert found == [tx_id]  # one copy on the gateway
    return str(tx_id)


async def test_completion_archives_the_log_to_arweave_and_ipfs(
    start: Start, arweave_gateway: str, arweave_wallet: Wallet
) -> None:
    h = await start(arweave_gateway)
    owner = Owner(DEV_PRIVATE_KEYS[1], 31337)
    s = await h.create(owner)
    await h.activate(owner, s, EXECUTOR)
    done = await h.stub.CompleteSession(complete_request(owner, s, new_key()))
    assert done.session.state == common.SESSION_STATE_COMPLETED
    await assert_archived(h, arweave_gateway, arweave_wallet, s.session_id, done)
    assert chain_of(h).calls.count("complete") == 1


async def test_arweave_down_leaves_the_session_active_and_a_retry_completes_it_once(
    start: Start, tmp_path: Path, arweave_wallet: Wallet
) -> None:
    node = ArlocalNode(tmp_path / "arlocal", port=free_port())  # its own, to stop and start again
    await asyncio.to_thread(node.start)
    try:
        async with ArweaveClient(node.url, arweave_wallet) as client:
            await client.fund(10**13)
        h = await start(node.url)
        owner = Owner(DEV_PRIVATE_KEYS[1], 31337)
        s = await h.create(owner)
        await h.activate(owner, s, EXECUTOR)
        before = await events_of(h, s.session_id)

        url = node.url
        await asyncio.to_thread(node.stop)
        key = new_key()
        loop = asyncio.get_running_loop()
        asked = loop.time()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.CompleteSession(complete_request(owner, s, key))
        took = loop.time() - asked
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        message = err.value.details() or ""
        assert "still ACTIVE" in message and url in message and "CompleteSession again" in message
        assert WINDOW * 0.9 <= took < WINDOW + 8, took  # retried for the window, then gave up
        # nothing happened: no transaction, no event, the session ACTIVE and its key free to ask again
        assert (await h.get(owner, s.session_id)).state == common.SESSION_STATE_ACTIVE
        assert chain_of(h).calls.count("complete") == 0
        assert [e.cursor for e in await events_of(h, s.session_id)] == [e.cursor for e in before]

        await asyncio.to_thread(node.start)  # the same port and store
        done = await h.stub.CompleteSession(complete_request(owner, s, key))
        assert done.session.state == common.SESSION_STATE_COMPLETED
        tx_id = await assert_archived(h, node.url, arweave_wallet, s.session_id, done)
        # asked once more with the same key: the recorded answer, nothing done twice
        again = await h.stub.CompleteSession(complete_request(owner, s, key))
        assert again.log_cid == done.log_cid and again.burn_tx_hash == done.burn_tx_hash
        assert await assert_archived(h, node.url, arweave_wallet, s.session_id, again) == tx_id
        assert chain_of(h).calls.count("complete") == 1
    finally:
        await asyncio.to_thread(node.stop)


async def test_gateway_back_within_the_window_completes_on_the_first_ask(
    start: Start, tmp_path: Path, arweave_wallet: Wallet
) -> None:
    node = ArlocalNode(tmp_path / "arlocal", port=free_port())
    await asyncio.to_thread(node.start)
    try:
        async with ArweaveClient(node.url, arweave_wallet) as client:
            await client.fund(10**13)
        h = await start(node.url)
        h.control.log_archive.arweave_window = 30.0  # long enough for the gateway to come back
        owner = Owner(DEV_PRIVATE_KEYS[1], 31337)
        s = await h.create(owner)
        await h.activate(owner, s, EXECUTOR)
        await asyncio.to_thread(node.stop)

        async def complete() -> pb.CompleteSessionResponse:
            return await h.stub.CompleteSession(complete_request(owner, s, new_key()))  # type: ignore[no-any-return]

        completing = asyncio.create_task(complete())
        await asyncio.sleep(1.0)
        assert not completing.done()
        await asyncio.to_thread(node.start)
        done = await asyncio.wait_for(completing, 30)
        assert done.session.state == common.SESSION_STATE_COMPLETED
        await assert_archived(h, node.url, arweave_wallet, s.session_id, done)
        assert chain_of(h).calls.count("complete") == 1
    finally:
        await asyncio.to_thread(node.stop)


async def test_without_a_gateway_the_log_goes_to_ipfs_only(
    tmp_path: Path, ipfs_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = load(
        SessionConfig,
        env={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}",
        ipfs_api=ipfs_api,
        timer_interval=3600,
    )
    with caplog.at_level("WARNING", logger="agentgpt.session"):
        service = RunningService(await build(config, chain=InMemorySessionChain()), server_config())
    said = [r.getMessage() for r in caplog.records if "AGENTGPT_ARWEAVE_GATEWAY is not set" in r.getMessage()]
    assert len(said) == 1 and "IPFS only" in said[0]
    await service.start()
    h = Harness(service)
    try:
        owner = Owner(DEV_PRIVATE_KEYS[1], 31337)
        s = await h.create(owner)
        await h.activate(owner, s, EXECUTOR)
        done = await h.stub.CompleteSession(complete_request(owner, s, new_key()))
        final = json.loads((await events_of(h, s.session_id))[-1].data_json)
        assert final["log_cid"] == done.log_cid and "log_arweave_tx" not in final
    finally:
        await h.close()
        await service.stop()

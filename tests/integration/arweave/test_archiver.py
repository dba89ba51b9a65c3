"""Archiver (what the services post archive copies through) against a REAL arlocal: a copy is posted once
and mined at once, a retry finds it instead of posting a second, the bounded wait on a gateway that is down
ends in UNAVAILABLE or in the copy once the gateway is back, and a refusal is not retried."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentgpt.arweave import ArweaveClient, InsufficientFunds, Wallet, archive_tags
from agentgpt.arweave.archiver import ArchiveConfig, Archiver, open_archiver
from agentgpt.errors import Unavailable
from agentgpt.runtime.config import ConfigError, load
from apps.localnet.arweave import ArlocalNode
from apps.localnet.ports import free_port


def tags(kind: str = "report", seq: int = 3) -> dict[str, str]:
    return archive_tags(kind=kind, session_id=uuid.uuid4().hex, chain_id=31337, seq=seq)


@pytest.fixture
async def archiver(arweave_gateway: str, arweave_wallet: Wallet) -> AsyncIterator[Archiver]:
    a = Archiver(ArweaveClient(arweave_gateway, arweave_wallet, timeout=20.0), mine=True)
    try:
        yield a
    finally:
        await a.close()


@pytest.fixture
async def own_node(tmp_path: Path, arweave_wallet: Wallet) -> AsyncIterator[ArlocalNode]:
    """An arlocal of this test's own on a fixed port, so that it can be stopped and started again at the
    address the archiver knows; the shared wallet funded on it."""
    node = ArlocalNode(tmp_path / "arlocal", port=free_port())
    await asyncio.to_thread(node.start)
    try:
        async with ArweaveClient(node.url, arweave_wallet) as client:
            await client.fund(10**13)
        yield node
    finally:
        await asyncio.to_thread(node.stop)


async def test_posted_once_mined_at_once_and_found_again_on_retry(
    archiver: Archiver, arweave_wallet: Wallet
) -> None:
    t = tags()
    first = await archiver.post(b'{"report": 1}', t)
    # mined: readable at once, verified, with its tags in order
    tx = await archiver.client.read(first)
    assert tx.data == b'{"report": 1}' and tx.tags == tuple(t.items())
    assert tx.owner_address == arweave_wallet.address
    assert await archiver.client.confirmations(first) is not None
    # the same bytes under the same tags again (a retried task): the same transaction, not a second one
    assert await archiver.post(b'{"report": 1}', t) == first
    assert await archiver.client.find(t) == [first]
    # other bytes under the same tags are another copy
    other = await archiver.post(b'{"report": 2}', t)
    assert other != first and await archiver.client.find(t) == [first, other]


async def test_a_copy_someone_else_signed_is_not_taken_for_ours(
    archiver: Archiver, arweave_gateway: str
) -> None:
    t = tags()
    stranger = Wallet.generate()
    async with ArweaveClient(arweave_gateway, stranger) as client:
        await client.fund(10**12)
        theirs = await client.post(b"same bytes", t)  # anyone may post under any tags
        await client.mine()
    ours = await archiver.post(b"same bytes", t)
    assert ours != theirs
    assert (await archiver.client.read(ours)).owner_address == archiver.address


async def test_down_for_the_whole_window_is_unavailable_in_bounded_time(
    own_node: ArlocalNode, arweave_wallet: Wallet
) -> None:
    url = own_node.url
    await asyncio.to_thread(own_node.stop)
    archiver = Archiver(ArweaveClient(url, arweave_wallet, timeout=2.0, retries=0), mine=True, backoff=0.1)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as err:
            await archiver.post(b"log", tags("event-log"), window=1.5)
        took = time.monotonic() - started
    finally:
        await archiver.close()
    assert 1.4 <= took < 4.0, took
    assert url in err.value.message and "attempts" in err.value.message


async def test_back_within_the_window_the_copy_is_posted(
    own_node: ArlocalNode, arweave_wallet: Wallet
) -> None:
    url = own_node.url
    await asyncio.to_thread(own_node.stop)
    archiver = Archiver(ArweaveClient(url, arweave_wallet, timeout=5.0, retries=0), mine=True, backoff=0.1)
    t = tags("event-log")
    try:
        posting = asyncio.create_task(archiver.post(b"the log", t, window=30.0))
        await asyncio.sleep(1.0)
        assert not posting.done()  # still trying
        await asyncio.to_thread(own_node.start)  # same port, same store
        tx_id = await asyncio.wait_for(posting, 20.0)
        assert (await archiver.client.read(tx_id)).data == b"the log"
        assert await archiver.client.find(t) == [tx_id]
    finally:
        await archiver.close()


async def test_a_refusal_is_not_retried(arweave_gateway: str) -> None:
    poor = Archiver(ArweaveClient(arweave_gateway, Wallet.generate()), mine=True)
    try:
        started = time.monotonic()
        with pytest.raises(InsufficientFunds, match="fund the wallet"):
            await poor.post(b"x" * 100, tags(), window=30.0)
        assert time.monotonic() - started < 10.0
    finally:
        await poor.close()


async def test_configuration(tmp_path: Path, arweave_wallet: Wallet) -> None:
    assert open_archiver(load(ArchiveConfig, env={})) is None
    with pytest.raises(ConfigError, match="AGENTGPT_ARWEAVE_WALLET_PATH is empty"):
        open_archiver(load(ArchiveConfig, env={"AGENTGPT_ARWEAVE_GATEWAY": "http://127.0.0.1:1984"}))
    missing = tmp_path / "absent.json"
    env = {"AGENTGPT_ARWEAVE_GATEWAY": "http://127.0.0.1:1984", "AGENTGPT_ARWEAVE_WALLET_PATH": str(missing)}
    with pytest.raises(ConfigError, match="AGENTGPT_ARWEAVE_WALLET_PATH: cannot read") as err:
        open_archiver(load(ArchiveConfig, env=env))
    assert str(missing) in str(err.value) and "unset AGENTGPT_ARWEAVE_GATEWAY" in str(err.value)
    path = arweave_wallet.save(tmp_path / "wallet.json")
    archiver = open_archiver(
        load(
            ArchiveConfig,
            env={**env, "AGENTGPT_ARWEAVE_WALLET_PATH": str(path), "AGENTGPT_ARWEAVE_MINE": "1"},
        )
    )
    assert archiver is not None and archiver.mine and archiver.address == arweave_wallet.address
    assert arweave_wallet.to_jwk()["d"] not in repr(archiver)  # the private key never shows
    await archiver.close()

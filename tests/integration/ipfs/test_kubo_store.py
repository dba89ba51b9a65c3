"""KuboStore against a REAL node (js-ipfs 0.66 with Kubo's RPC API, started by the `ipfs_api` fixture).

Every CID the store returns must equal the locally computed one, the node must actually hold and pin
what was put, and failures must be fast, typed and name the endpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import aiohttp
import aioipfs
import pytest
from multiformats import CID

from agentgpt.errors import Unavailable
from agentgpt.ipfs import codec
from agentgpt.ipfs.cid import CHUNK_SIZE, MAX_LINKS, codec_of, dag_cbor_cid, file_cid, normalize, raw_cid
from agentgpt.ipfs.errors import ContentNotFound
from agentgpt.ipfs.store import EmbeddedStore, KuboStore
from apps.localnet.ipfs import IpfsNode, pid_alive

pytestmark = pytest.mark.ipfs


@pytest.fixture
async def kubo(ipfs_api: str) -> AsyncIterator[KuboStore]:
    store = KuboStore(ipfs_api, timeout=20.0)
    yield store
    await store.close()


async def rpc(store: KuboStore, path: str, **params: str) -> dict:
    """A direct RPC call, bypassing the store, to see what the node really holds."""
    async with aiohttp.ClientSession() as s, s.post(f"{store.endpoint}/api/v0/{path}", params=params) as r:
        assert r.status == 200, await r.text()
        return await r.json(content_type=None)


async def pinned_recursively(store: KuboStore, cid: str) -> bool:
    answer = await rpc(store, "pin/ls", arg=cid, type="recursive")
    return any(normalize(k) == cid and v["Type"] == "recursive" for k, v in answer["Keys"].items())


async def test_probe_reports_the_node_version(kubo: KuboStore) -> None:
    info = await kubo.probe()
    assert info.startswith("ipfs ") and kubo.endpoint in info


@pytest.mark.parametrize("size", [0, 1, 1000, CHUNK_SIZE])
async def test_raw_single_block_round_trip_with_local_cid(kubo: KuboStore, size: int) -> None:
    data = os.urandom(size)
    cid = await kubo.put(data, "raw")
    assert cid == raw_cid(data) == file_cid(data)
    assert codec_of(cid) == "raw"
    assert await kubo.get(cid) == data
    assert await kubo.has(cid)
    assert await pinned_recursively(kubo, cid)


async def test_dag_cbor_round_trip_is_a_traversable_node_with_the_local_cid(kubo: KuboStore) -> None:
    doc = {
        "session_id": str(2**200 + 7),
        "seq": 50,
        "state_root": os.urandom(32),
        "big": 2**63 + 1,
        "neg": -(2**63),
        "flags": [True, False, None],
        "context": {"model": "planner/v1", "epoch": 3, "blob": b"\x00\xff"},
    }
    block = codec.encode(doc)
    cid = await kubo.put(block, "dag-cbor")
    assert cid == dag_cbor_cid(block)
    assert cid.startswith("bafyrei")
    assert codec.decode(await kubo.get(cid)) == doc
    assert await pinned_recursively(kubo, cid)
    # the node understood it as IPLD, not as an opaque blob
    seq = await rpc(kubo, "dag/get", arg=f"{cid}/seq")
    assert seq == 50


async def test_300_kib_payload_becomes_a_unixfs_file_whose_cid_we_compute(kubo: KuboStore) -> None:
    data = os.urandom(300 * 1024)
    cid = await kubo.put(data, "raw")
    assert cid == file_cid(data)
    assert codec_of(cid) == "dag-pb"  # two raw leaves under one dag-pb node, as `ipfs add` builds it
    assert await kubo.get(cid) == data
    assert await pinned_recursively(kubo, cid)
    # any IPFS client can read it back with plain `cat`, and the leaves are real raw blocks
    client = aioipfs.AsyncIPFS(maddr=f"/ip4/127.0.0.1/tcp/{kubo.base_url.port}")
    try:
        assert await client.core.cat(cid) == data
        first_leaf = raw_cid(data[:CHUNK_SIZE])
        assert await client.block.get(first_leaf) == data[:CHUNK_SIZE]
    finally:
        await client.close()


async def test_two_level_tree_past_174_chunks(kubo: KuboStore) -> None:
    data = os.urandom(CHUNK_SIZE * MAX_LINKS + 1)  # 175 leaves -> root over two internal nodes
    cid = await kubo.put(data, "raw")
    assert cid == file_cid(data)
    assert await kubo.get(cid) == data


async def test_put_is_idempotent_and_get_accepts_any_cid_spelling(kubo: KuboStore) -> None:
    data = os.urandom(64)
    cid = await kubo.put(data)
    assert await kubo.put(data) == cid
    base58 = str(CID.decode(cid).encode("base58btc"))
    assert base58.startswith("z")
    assert await kubo.get(base58) == data


async def test_missing_cid_fails_fast_with_content_not_found(kubo: KuboStore) -> None:
    absent = raw_cid(os.urandom(32))
    t0 = time.monotonic()
    with pytest.raises(ContentNotFound) as err:
        await kubo.get(absent)
    assert time.monotonic() - t0 < 3
    assert err.value.cid == absent and absent in err.value.message and kubo.endpoint in err.value.message
    assert not await kubo.has(absent)
    with pytest.raises(ContentNotFound):
        await kubo.pin(absent)
    absent_tree = file_cid(os.urandom(CHUNK_SIZE + 1))
    with pytest.raises(ContentNotFound):
        await kubo.get(absent_tree)


async def test_pin_of_present_content_succeeds(kubo: KuboStore) -> None:
    cid = await kubo.put(os.urandom(10))
    await kubo.pin(cid)
    assert await pinned_recursively(kubo, cid)


async def test_embedded_store_gives_the_same_cids_as_the_node(kubo: KuboStore, tmp_path) -> None:
    embedded = EmbeddedStore(tmp_path)
    payloads = [b"", b"x", os.urandom(CHUNK_SIZE), os.urandom(CHUNK_SIZE + 1), os.urandom(300 * 1024)]
    for data in payloads:
        assert await embedded.put(data, "raw") == await kubo.put(data, "raw")
    block = codec.encode({"session_id": "1", "seq": 0, "state_root": bytes(32), "tasks": ["a", "b"]})
    assert await embedded.put(block, "dag-cbor") == await kubo.put(block, "dag-cbor")


async def test_stopped_node_gives_unavailable_quickly_and_restart_keeps_content(tmp_path) -> None:
    node = IpfsNode(tmp_path / "node")
    node.start()
    try:
        store = KuboStore(node.api, timeout=5.0, retries=2, backoff=0.05)
        cid = await store.put(b"before the crash")
        pid = node.pid
    finally:
        node.stop()
    assert pid is not None and not pid_alive(pid)
    try:
        ops = {
            "get": lambda: store.get(cid),
            "put": lambda: store.put(b"after"),
            "probe": store.probe,
            "has": lambda: store.has(cid),
        }
        for name, op in ops.items():
            t0 = time.monotonic()
            with pytest.raises(Unavailable) as err:
                await op()
            assert time.monotonic() - t0 < 3, name
            assert store.endpoint in err.value.message
            assert "unreachable" in err.value.message and "after 3 attempts" in err.value.message
    finally:
        await store.close()

    # the node comes back on the same repo (new ports): what was acknowledged is still there, pinned
    with node:
        second_pid = node.pid
        async with KuboStore(node.api, timeout=10) as again:
            assert await again.get(cid) == b"before the crash"
            assert await pinned_recursively(again, cid)
    assert second_pid is not None and second_pid != pid and not pid_alive(second_pid)

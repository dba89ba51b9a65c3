"""ArweaveClient against a REAL gateway: arlocal (tools/arlocal), started by the `arweave_gateway` fixture.

What the gateway accepts it has checked itself (arlocal recomputes the data_root with arweave-js and verifies
the signature), so a post that succeeds proves the Python transaction format; what `read` returns it has
checked again, so a gateway that alters bytes is caught (here: a small proxy in front of arlocal).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from agentgpt.arweave import (
    APP_NAME,
    ArweaveClient,
    InsufficientFunds,
    TransactionIntegrityError,
    TransactionNotFound,
    TransactionRejected,
    Wallet,
    archive_tags,
    b64url_decode,
    b64url_encode,
    data_root,
    tx_id_bytes,
    tx_id_from_bytes,
)
from agentgpt.errors import Unavailable
from apps.localnet.arweave import ArlocalNode
from apps.localnet.ports import free_port

KIB = 1024
Rewrite = Callable[[str, bytes], bytes]


@pytest.fixture
async def client(arweave_gateway: str, arweave_wallet: Wallet) -> AsyncIterator[ArweaveClient]:
    async with ArweaveClient(arweave_gateway, arweave_wallet, timeout=20.0) as c:
        yield c


def session_tags(kind: str = "event-log", seq: int = 1) -> tuple[str, dict[str, str]]:
    """Tags under a session id no other test uses (the gateway is shared by the whole test session)."""
    session_id = uuid.uuid4().hex
    return session_id, archive_tags(kind=kind, session_id=session_id, chain_id=31337, seq=seq)


@pytest.fixture
async def proxy(arweave_gateway: str) -> AsyncIterator[Callable[[Rewrite], Awaitable[str]]]:
    """A gateway in front of arlocal that passes every request on and rewrites the answers' bodies with
    `rewrite(path, body)`: a gateway that serves altered bytes."""
    runners: list[web.AppRunner] = []
    upstream = aiohttp.ClientSession()

    async def start(rewrite: Rewrite) -> str:
        async def forward(request: web.Request) -> web.Response:
            async with upstream.request(
                request.method,
                arweave_gateway + request.path_qs,
                data=await request.read(),
                headers={"Content-Type": request.headers.get("Content-Type", "application/octet-stream")},
            ) as resp:
                body = rewrite(request.path, await resp.read())
                return web.Response(status=resp.status, body=body, content_type=resp.content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()
    await upstream.close()


# ---------------------------------------------------------------------------------------------- round trip
async def test_post_mine_read_back_verified_and_found_by_tags(
    client: ArweaveClient, arweave_wallet: Wallet
) -> None:
    session_id, log_tags = session_tags("event-log", seq=1)
    report_tags = archive_tags(
        kind="report", session_id=session_id, chain_id=31337, seq=2, content_type="text/markdown"
    )
    log = json.dumps({"session": session_id, "events": ["created", "activated", "completed"]}).encode()
    report = "# Weekly report\n\nrebalanced 30 % to dUSD ✓\n".encode()

    log_id = await client.post(log, log_tags)
    report_id = await client.post(report, report_tags)
    assert await client.confirmations(log_id) is None  # pending until mined
    await client.mine()
    assert await client.confirmations(log_id) == 0  # in the newest block

    got = await client.read(log_id)
    assert got.id == log_id and got.data == log
    assert got.tag_map == log_tags and got.tag("Kind") == "event-log"
    assert got.owner_address == arweave_wallet.address
    assert (await client.read(report_id)).data == report

    assert set(await client.find({"Session-Id": session_id})) == {log_id, report_id}
    assert await client.find({"App-Name": APP_NAME, "Session-Id": session_id, "Kind": "report"}) == [
        report_id
    ]
    assert await client.find({"Session-Id": session_id, "Kind": "filing"}) == []

    # The id anchored on chain as a bytes32 comes back to the same transaction.
    assert len(tx_id_bytes(log_id)) == 32
    assert (await client.read(tx_id_from_bytes(tx_id_bytes(log_id)))).data == log


@pytest.mark.parametrize("size", [0, 1, 256 * KIB, 600 * KIB], ids=lambda s: f"{s}B")
async def test_sizes_across_chunk_boundaries_are_accepted_and_read_back(
    client: ArweaveClient, size: int
) -> None:
    data = os.urandom(size)
    _, tags = session_tags("filing")
    tx_id = await client.post(data, tags)  # arlocal recomputed this data_root with arweave-js and agreed
    await client.mine()
    got = await client.read(tx_id)
    assert got.data == data
    assert got.transaction.data_root == data_root(data)
    assert got.transaction.data_size == size


async def test_posting_the_same_transaction_twice_is_harmless(client: ArweaveClient) -> None:
    session_id, tags = session_tags()
    tx = await client.build(b"once", tags)
    assert await client.submit(tx) == tx.id
    assert await client.submit(tx) == tx.id
    await client.mine()
    assert await client.find({"Session-Id": session_id}) == [tx.id]


# ---------------------------------------------------------------------------------------------- tampering
async def test_arlocal_refuses_a_transaction_altered_after_signing(client: ArweaveClient) -> None:
    session_id, tags = session_tags()
    tx = await client.build(b'{"events": ["completed"]}', tags)
    altered_data = dataclasses.replace(tx, data=b'{"events": ["terminated"]}'[: tx.data_size])
    name, value = tx.tags[2]
    altered_tag = dataclasses.replace(tx, tags=(*tx.tags[:2], (name, value + b"0"), *tx.tags[3:]))
    for bad in (altered_data, altered_tag):
        with pytest.raises(TransactionRejected) as err:
            await client.submit(bad)
        assert err.value.status == 400
        assert client.gateway_url in err.value.message
    with pytest.raises(TransactionNotFound):
        await client.read(tx.id)
    assert await client.submit(tx) == tx.id  # the genuine one is accepted
    await client.mine()
    assert (await client.read(tx.id)).tag("Session-Id") == session_id


def flip_first_byte(body: bytes) -> bytes:
    return bytes([body[0] ^ 1]) + body[1:]


async def test_read_refuses_bytes_a_gateway_altered(
    client: ArweaveClient, arweave_wallet: Wallet, proxy
) -> None:
    _, tags = session_tags()
    data = b"the archived event log " * 100
    tx_id = await client.post(data, tags)
    await client.mine()
    data_path = f"/{tx_id}"
    header_path = f"/tx/{tx_id}"

    def altered_tag(body: bytes) -> bytes:
        headers = json.loads(body)
        headers["tags"][1]["value"] = b64url_encode(b"filing")
        return json.dumps(headers).encode()

    def altered_root(body: bytes) -> bytes:  # data and data_root both replaced: only the signature tells
        headers = json.loads(body)
        headers["data_root"] = b64url_encode(data_root(flip_first_byte(data)))
        return json.dumps(headers).encode()

    cases: list[tuple[Rewrite, str]] = [
        (lambda p, b: flip_first_byte(b) if p == data_path else b, "does not hash to its data_root"),
        (lambda p, b: b + b"!" if p == data_path else b, "where data_size says"),
        (lambda p, b: altered_tag(b) if p == header_path else b, "signature does not match"),
        (
            lambda p, b: altered_root(b) if p == header_path else flip_first_byte(b) if p == data_path else b,
            "signature does not match",
        ),
    ]
    for rewrite, problem in cases:
        url = await proxy(rewrite)
        async with ArweaveClient(url, arweave_wallet) as through_proxy:
            with pytest.raises(TransactionIntegrityError, match=problem) as err:
                await through_proxy.read(tx_id)
        assert err.value.tx_id == tx_id and url in err.value.message
        assert err.value.code.name == "DATA_LOSS"

    honest = await proxy(lambda p, b: b)  # the proxy itself changes nothing
    async with ArweaveClient(honest, arweave_wallet) as through_proxy:
        assert (await through_proxy.read(tx_id)).data == data


# ---------------------------------------------------------------------------------------------- failures
async def test_unknown_transaction_is_not_found(client: ArweaveClient) -> None:
    unknown = tx_id_from_bytes(os.urandom(32))
    with pytest.raises(TransactionNotFound) as err:
        await client.read(unknown)
    assert err.value.tx_id == unknown and err.value.code.name == "NOT_FOUND"
    with pytest.raises(TransactionNotFound):
        await client.confirmations(unknown)


async def test_unfunded_wallet_is_told_to_fund(arweave_gateway: str) -> None:
    poor = Wallet.generate()
    async with ArweaveClient(arweave_gateway, poor) as client:
        with pytest.raises(InsufficientFunds) as err:
            await client.post(b"x" * 1000, session_tags()[1])
    assert poor.address in err.value.message and "fund the wallet" in err.value.message


async def test_gateway_down_is_unavailable_naming_it(arweave_wallet: Wallet) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with ArweaveClient(url, arweave_wallet, timeout=2.0, retries=1, backoff=0.01) as client:
        calls = [
            client.post(b"x", {"K": "v"}),
            client.read(tx_id_from_bytes(b"\x00" * 32)),
            client.find({"K": "v"}),
            client.info(),
            client.mine(),
        ]
        for call in calls:
            with pytest.raises(Unavailable, match="unreachable") as err:
                await call
            assert url in err.value.message and "AGENTGPT_ARWEAVE_GATEWAY" in err.value.message
            assert err.value.code.name == "UNAVAILABLE"


async def test_store_survives_a_restart_and_down_means_unavailable(
    tmp_path: Path, arweave_wallet: Wallet
) -> None:
    node = ArlocalNode(tmp_path / "arlocal")
    try:
        await asyncio.to_thread(node.start)
        async with ArweaveClient(node.url, arweave_wallet, retries=0) as client:
            await client.fund(10**12)
            sid, tags = session_tags()
            tx_id = await client.post(b"kept across restarts", tags)
            await client.mine()
        old_url = node.url
        await asyncio.to_thread(node.stop)
        assert not node.running and not node.pidfile.exists()
        async with ArweaveClient(old_url, arweave_wallet, retries=0) as client:
            with pytest.raises(Unavailable, match=old_url):
                await client.read(tx_id)

        dead = await asyncio.create_subprocess_exec("true")  # a pid that no longer runs: a stale pidfile
        await dead.wait()
        node.pidfile.write_text(f"{dead.pid}\n")
        await asyncio.to_thread(node.start)
        async with ArweaveClient(node.url, arweave_wallet) as client:
            assert (await client.read(tx_id)).data == b"kept across restarts"
            # arlocal keeps its transactions across a restart (its block height it does not: it starts at 0)
            assert await client.find({"Session-Id": sid}) == [tx_id]
    finally:
        node.stop()
    assert (tmp_path / "arlocal" / "db" / "db.sqlite").is_file()  # a given directory is kept
    assert b64url_decode(tx_id) == tx_id_bytes(tx_id)


def test_the_gateway_does_not_outlive_a_parent_killed_with_sigkill(tmp_path: Path) -> None:
    """A stack or test killed with SIGKILL cannot stop its gateway: the gateway notices it was re-parented
    and shuts down by itself (before this, every killed `agentgpt up` left an arlocal running)."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[3]
    code = (
        "import sys, time, pathlib\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from apps.localnet.arweave import ArlocalNode\n"
        f"node = ArlocalNode(pathlib.Path({str(tmp_path / 'gw')!r})).start()\n"
        "print(node.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent did not start a gateway: {line!r}"
        pid = int(line)
        os.kill(parent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    alive = Path(f"/proc/{pid}").exists()
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the gateway outlived its parent by 20 s"

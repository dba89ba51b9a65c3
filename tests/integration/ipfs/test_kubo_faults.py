"""KuboStore against misbehaving endpoints: a lying node, a hanging node, a flapping connection.

These need no real node: small loopback servers play the faulty node, so each failure mode is exact.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from agentgpt.errors import Unavailable
from agentgpt.ipfs.cid import CHUNK_SIZE, dag_cbor_cid, file_cid, raw_cid
from agentgpt.ipfs.codec import encode
from agentgpt.ipfs.errors import CidMismatchError, ContentNotFound
from agentgpt.ipfs.store import KuboStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def fake_node() -> AsyncIterator[Callable[[dict[str, Handler]], Awaitable[str]]]:
    """Start an HTTP server answering /api/v0/<path> with the given handlers; returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(handlers: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in handlers.items():
            app.router.add_post(f"/api/v0/{path}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.2)  # hanging handlers must not stall teardown
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def answer(obj: object) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(obj)

    return handler


def raw_answer(data: bytes) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=data)

    return handler


def error(status: int, message: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"Message": message, "Code": 0, "Type": "error"}, status=status)

    return handler


async def test_node_answering_a_different_cid_on_add_is_refused(fake_node) -> None:
    url = await fake_node({"add": answer({"Hash": raw_cid(b"something else"), "Size": 14})})
    async with KuboStore(url, timeout=2) as store:
        with pytest.raises(CidMismatchError) as err:
            await store.put(b"my checkpoint", "raw")
    assert err.value.expected == raw_cid(b"my checkpoint")
    assert err.value.actual == raw_cid(b"something else")
    assert url in err.value.message


async def test_node_answering_a_different_cid_on_dag_put_is_refused(fake_node) -> None:
    url = await fake_node({"dag/put": answer({"Cid": {"/": dag_cbor_cid(encode({"b": 2}))}})})
    async with KuboStore(url, timeout=2) as store:
        with pytest.raises(CidMismatchError):
            await store.put(encode({"a": 1}), "dag-cbor")


async def test_node_returning_wrong_bytes_is_an_integrity_error(fake_node) -> None:
    url = await fake_node({"block/get": raw_answer(b"tampered"), "cat": raw_answer(b"t" * (CHUNK_SIZE + 1))})
    async with KuboStore(url, timeout=2) as store:
        with pytest.raises(CidMismatchError, match="returned wrong content"):
            await store.get(raw_cid(b"original"))
        with pytest.raises(CidMismatchError):
            await store.get(file_cid(b"o" * (CHUNK_SIZE + 1)))


async def test_node_errors_map_to_not_found_or_unavailable(fake_node) -> None:
    url = await fake_node(
        {
            "block/get": error(500, "block was not found locally (offline): ipld: could not find bafk..."),
            "add": error(500, "repo is full"),
            "version": error(403, "denied"),
        }
    )
    async with KuboStore(url, timeout=2) as store:
        with pytest.raises(ContentNotFound):
            await store.get(raw_cid(b"absent"))
        with pytest.raises(Unavailable, match="repo is full"):
            await store.put(b"x")
        with pytest.raises(Unavailable, match="HTTP 403"):
            await store.probe()


async def test_hanging_node_times_out_as_unavailable(fake_node) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response()

    url = await fake_node({"version": hang, "block/get": hang, "add": hang})
    async with KuboStore(url, timeout=0.5, retries=3) as store:
        for op in (store.probe, lambda: store.get(raw_cid(b"x")), lambda: store.put(b"x")):
            t0 = time.monotonic()
            with pytest.raises(Unavailable, match=r"timed out after 0\.5s"):
                await op()
            assert time.monotonic() - t0 < 1.5  # timeouts are not retried


async def test_dropped_connections_are_retried_with_backoff_then_succeed() -> None:
    """The first two connections are closed without an answer; the third gets a real reply."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if connections > 2:
            body = json.dumps({"Version": "0.0.0-flaky"}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with KuboStore(f"/ip4/127.0.0.1/tcp/{port}", timeout=2, retries=3, backoff=0.05) as store:
            assert await store.probe() == f"ipfs 0.0.0-flaky at http://127.0.0.1:{port}"
        assert connections == 3
        connections = -100  # never answer again: retries are bounded
        async with KuboStore(f"/ip4/127.0.0.1/tcp/{port}", timeout=2, retries=2, backoff=0.05) as store:
            with pytest.raises(Unavailable, match="after 3 attempts"):
                await store.probe()
        assert connections == -97
    finally:
        server.close()
        await server.wait_closed()

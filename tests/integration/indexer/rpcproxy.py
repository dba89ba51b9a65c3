"""A loopback JSON-RPC proxy between the indexer and anvil that a test can cut, restore, make lag,
answer garbage, hang, or inject bad logs into."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp import web

FACTORY_UNKNOWN_TOPIC = "0x" + "ab" * 32


class RpcProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.lag = 0
        self.inject_logs: list[dict[str, Any]] = []
        self.requests = 0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self._client is None:
            self._client = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def cut(self) -> None:
        """Stop listening: connections are refused until restore()."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restore(self) -> None:
        self.mode = "pass"
        if self._runner is None:
            await self.start()

    async def stop(self) -> None:
        await self.cut()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _upstream(self, payload: Any) -> Any:
        assert self._client is not None
        async with self._client.post(self.upstream, json=payload) as resp:
            return await resp.json()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.json()
        if self.mode == "garbage":
            return web.Response(body=b"<html>502 bad gateway, but 200</html>", content_type="text/html")
        if self.mode == "garbage_json":
            return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {"surprise": True}})
        if self.mode == "hang":
            # Hold the request until the mode changes (the client times out meanwhile).
            for _ in range(600):  # at most 30 s
                if self.mode != "hang" or self._runner is None:
                    break
                await asyncio.sleep(0.05)
        calls = body if isinstance(body, list) else [body]
        head = None
        if self.mode == "lag":
            head = int(
                (
                    await self._upstream(
                        {"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []}
                    )
                )["result"],
                16,
            )
        answers = []
        for call in calls:
            method = call.get("method")
            if self.mode == "lag" and head is not None:
                visible = head - self.lag
                if method == "eth_blockNumber":
                    answers.append({"jsonrpc": "2.0", "id": call["id"], "result": hex(visible)})
                    continue
                if method == "eth_getBlockByNumber" and int(call["params"][0], 16) > visible:
                    answers.append({"jsonrpc": "2.0", "id": call["id"], "result": None})
                    continue
            answer = await self._upstream(call)
            if method == "eth_getLogs" and self.inject_logs and isinstance(answer.get("result"), list):
                answer["result"] = answer["result"] + self.inject_logs
            answers.append(answer)
        return web.json_response(answers if isinstance(body, list) else answers[0])

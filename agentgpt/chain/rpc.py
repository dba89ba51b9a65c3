"""The one way this codebase opens a web3.py connection to a chain: `connect(rpc_url)`.

Why not `AsyncWeb3(AsyncHTTPProvider(url))` directly: in web3.py 8.0.0 every async HTTP request takes
`HTTPSessionManager._lock`, a process-wide `threading.Lock`, through a thread pool. A request cancelled
while it waits for that lock (a fenced executor's task, a stopped service, a timeout) leaves the pool
thread to acquire the lock after the request is gone, and nothing ever releases it: from then on every
HTTP request of every provider in the process hangs (web3.py issue #3867, open; fix proposed in
#3872). Our services run one event loop per process, so the aiohttp session cache needs no lock at
all; `LoopSessionManager` keeps one session per (event loop, endpoint) without one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3._utils.http_session_manager import HTTPSessionManager


class LoopSessionManager(HTTPSessionManager):
    """web3's session manager with a lock-free async session cache (see the module docstring)."""

    async def async_cache_and_return_session(
        self,
        endpoint_uri: Any,
        session: ClientSession | None = None,
        request_timeout: ClientTimeout | None = None,
    ) -> ClientSession:
        key = f"{id(asyncio.get_running_loop())}:{endpoint_uri}"
        cached: ClientSession | None = self.session_cache.get_cache_entry(key)
        if cached is not None and not cached.closed and not cached._loop.is_closed():
            return cached
        if cached is not None:
            self.session_cache._data.pop(key, None)
            if not cached.closed and not cached._loop.is_closed():
                await cached.close()
        fresh = session or ClientSession(
            raise_for_status=True, connector=TCPConnector(force_close=True, enable_cleanup_closed=True)
        )
        _, evicted = self.session_cache.cache(key, fresh)
        for old in (evicted or {}).values():
            if not old.closed and not old._loop.is_closed():
                await old.close()
        return fresh


def connect(rpc_url: str, timeout: float = 30.0) -> AsyncWeb3[Any]:
    """An AsyncWeb3 on `rpc_url`; each HTTP request may take up to `timeout` seconds."""
    provider = AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout})
    provider._request_session_manager = LoopSessionManager()
    return AsyncWeb3(provider)

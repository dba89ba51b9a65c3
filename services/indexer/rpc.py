"""A small, strict JSON-RPC client for what the follower needs (heads, headers, logs).

The follower talks to the chain through this instead of web3.py because it must tell apart three
failure kinds that web3 blurs: the endpoint is unreachable or slow (retry with backoff), the endpoint
answered something that is not a valid answer (garbage: count it, retry), and the endpoint answered a
valid "not found" (a lagging node: wait, never treat it as a reorg). Headers are fetched with JSON-RPC
batches so catching up does not cost one round trip per block.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp

_HEX_QUANTITY = re.compile(r"^0x[0-9a-fA-F]{1,64}$")
_HEX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


class ChainRpcError(Exception):
    """The RPC failed; `kind` says how (for metrics and logs): unreachable, timeout, garbage, error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class RangeTooLarge(ChainRpcError):
    """The node refused an eth_getLogs range (too many results / range limit): shrink and retry."""

    def __init__(self, message: str) -> None:
        super().__init__("range_too_large", message)


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: str  # 0x-prefixed lower-case hex
    parent_hash: str


def quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not _HEX_QUANTITY.match(value):
        raise ChainRpcError("garbage", f"{what} is not a hex quantity: {str(value)[:80]!r}")
    return int(value, 16)


def block_hash(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HEX_HASH.match(value):
        raise ChainRpcError("garbage", f"{what} is not a 32-byte hash: {str(value)[:80]!r}")
    return value.lower()


# Error messages nodes use when a log query is too big (geth, erigon, alchemy, infura, anvil).
_TOO_LARGE_HINTS = ("too many", "limit", "range", "exceed", "response size", "query returned more")


class ChainRpc:
    """JSON-RPC over HTTP with a per-call timeout. One instance per chain; close() when done."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=8, force_close=False),
            )
        return self._session

    async def _post(self, payload: Any) -> Any:
        try:
            async with self._http().post(
                self.url, data=json.dumps(payload), headers={"Content-Type": "application/json"}
            ) as resp:
                body = await resp.read()
                if resp.status >= 500 or resp.status == 429:
                    raise ChainRpcError("unreachable", f"HTTP {resp.status}")
        except TimeoutError:
            raise ChainRpcError("timeout", f"no answer from {self.url} within {self.timeout}s") from None
        except aiohttp.ClientError as exc:
            raise ChainRpcError("unreachable", f"{type(exc).__name__}: {exc}"[:200]) from None
        try:
            return json.loads(body)
        except ValueError:
            raise ChainRpcError("garbage", f"not JSON: {body[:80]!r}") from None

    @staticmethod
    def _result(answer: Any, method: str) -> Any:
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise ChainRpcError("garbage", f"{method}: not a JSON-RPC answer: {str(answer)[:80]!r}")
        if "error" in answer and answer["error"] is not None:
            err = answer["error"]
            message = str(err.get("message", err) if isinstance(err, dict) else err)[:300]
            if method == "eth_getLogs" and any(h in message.lower() for h in _TOO_LARGE_HINTS):
                raise RangeTooLarge(message)
            raise ChainRpcError("error", f"{method}: {message}")
        return answer["result"]

    async def call(self, method: str, params: list[Any]) -> Any:
        answer = await self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        )
        return self._result(answer, method)

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one request; results in call order (nodes may answer a batch in any order)."""
        if not calls:
            return []
        first = next(self._ids)
        for _ in calls[1:]:
            next(self._ids)
        payload = [
            {"jsonrpc": "2.0", "id": first + i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
        ]
        answers = await self._post(payload)
        if not isinstance(answers, list) or len(answers) != len(calls):
            raise ChainRpcError("garbage", f"batch of {len(calls)} answered with {str(answers)[:80]!r}")
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        out = []
        for i, (method, _) in enumerate(calls):
            if first + i not in by_id:
                raise ChainRpcError("garbage", f"batch answer lacks id {first + i}")
            out.append(self._result(by_id[first + i], method))
        return out

    # ------------------------------------------------------------------ typed calls
    async def chain_id(self) -> int:
        return quantity(await self.call("eth_chainId", []), "eth_chainId")

    async def block_number(self) -> int:
        return quantity(await self.call("eth_blockNumber", []), "eth_blockNumber")

    async def headers(self, numbers: list[int]) -> list[BlockHeader | None]:
        """Headers of `numbers`; None where the node does not have the block (yet)."""
        out: list[BlockHeader | None] = []
        for chunk_start in range(0, len(numbers), 200):
            chunk = numbers[chunk_start : chunk_start + 200]
            results = await self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk])
            for n, raw in zip(chunk, results, strict=True):
                out.append(None if raw is None else parse_header(raw, n))
        return out

    async def get_logs(
        self, from_block: int, to_block: int, *, addresses: list[str] | None, topics: list[Any]
    ) -> list[dict[str, Any]]:
        return _log_list(
            await self.call("eth_getLogs", [_log_filter(from_block, to_block, addresses, topics)])
        )

    async def get_logs_many(
        self, from_block: int, to_block: int, filters: list[tuple[list[str] | None, list[Any]]]
    ) -> list[dict[str, Any]]:
        """The logs of several (addresses, topics) filters over one range, in one request (a batch)."""
        if len(filters) == 1:
            return await self.get_logs(from_block, to_block, addresses=filters[0][0], topics=filters[0][1])
        results = await self.batch(
            [("eth_getLogs", [_log_filter(from_block, to_block, a, t)]) for a, t in filters]
        )
        return [entry for r in results for entry in _log_list(r)]


def _log_filter(
    from_block: int, to_block: int, addresses: list[str] | None, topics: list[Any]
) -> dict[str, Any]:
    flt: dict[str, Any] = {"fromBlock": hex(from_block), "toBlock": hex(to_block), "topics": topics}
    if addresses is not None:
        flt["address"] = addresses
    return flt


def _log_list(result: Any) -> list[dict[str, Any]]:
    if not isinstance(result, list):
        raise ChainRpcError("garbage", f"eth_getLogs answered {str(result)[:80]!r}")
    return result


def parse_header(raw: Any, expected_number: int) -> BlockHeader:
    if not isinstance(raw, dict):
        raise ChainRpcError("garbage", f"block {expected_number} is not an object: {str(raw)[:80]!r}")
    number = quantity(raw.get("number"), "block.number")
    if number != expected_number:
        raise ChainRpcError("garbage", f"asked for block {expected_number}, got {number}")
    return BlockHeader(
        number, block_hash(raw.get("hash"), "block.hash"), block_hash(raw.get("parentHash"), "parentHash")
    )


async def sleep_backoff(attempt: int, base: float, cap: float) -> None:
    await asyncio.sleep(min(cap, base * (2 ** min(attempt, 10))))

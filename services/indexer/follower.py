"""Follows one chain: blocks with parent-hash continuity, the project's events, reorgs, halts.

The loop, per step:
1. read the head; the target is head - confirmations;
2. take the next range [next, to] (adaptive size); blocks older than head - finality_window are final,
   so their headers are not fetched (catch-up speed, the way Ponder/Envio do it); for the rest of the
   range the headers are fetched and must link to each other and to the last kept header;
3. fetch the logs of the range (followed contracts by address, session accounts by topic) in sub-ranges
   pipelined with decoding, check each log's block hash against the fetched headers (a mismatch is a
   reorg racing our reads: retry), decode;
4. commit headers, events and the cursor in one transaction.

Reorgs: a fetched header whose parent is not the kept header below it (or, at the tip, a kept header
no longer canonical) means a reorg. The kept headers (the last finality_window + 1 blocks) are compared
with the canonical ones from the top down; the first match is the common ancestor: events above it are
retracted (new cursors, removed=true) and the blocks re-ingested. No match inside the window means the
reorg is deeper than the window: the chain halts, durably, with the reason, a metric and NOT_SERVING
health, because continuing would serve data that may be wrong.

A lagging or flapping RPC is not a reorg: a head that went backwards, or a block the node does not have
(yet), makes the follower wait and retry. Only a *different* block at a height we hold is a reorg.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import operator
import time
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address

from agentgpt.network import ChainInfo
from services.indexer.decoding import DecodedEvent, EventDecoder, LogParser, SkippedLog
from services.indexer.metrics import IndexerMetrics
from services.indexer.rpc import BlockHeader, ChainRpc, ChainRpcError, RangeTooLarge
from services.indexer.store import CursorMoved, IndexerStore

log = logging.getLogger("agentgpt.indexer.follower")


class Health:
    FOLLOWING = "following"
    SYNCING = "syncing"
    DEGRADED = "degraded"
    HALTED = "halted"


@dataclass(frozen=True)
class FollowerTuning:
    poll_interval: float = 1.0
    max_batch_blocks: int = 2000
    min_batch_blocks: int = 1
    retry_base: float = 0.2
    retry_cap: float = 10.0
    #: A range's logs are fetched in up to this many sub-ranges, pipelined with decoding.
    fetch_parts: int = 8
    #: ... each at least this many blocks (tiny ranges are not worth an extra request).
    min_part_blocks: int = 8


@dataclass
class ChainStatus:
    """What GetChainStatus reports; updated by the follower after every step."""

    chain_id: int
    name: str
    confirmations: int
    finality_window: int
    health: str = Health.SYNCING
    head_block: int = 0
    indexed_block: int = 0
    reorgs_total: int = 0
    detail: str = ""
    updated_at: float = field(default_factory=time.time)

    @property
    def lag_blocks(self) -> int:
        return max(0, self.head_block - self.indexed_block)


_log_position = operator.itemgetter(0, 3)  # RawLog (block_number, log_index)
#: Decoding yields to the event loop after this many logs (a few ms of work).
_DECODE_SLICE = 512


class RetryLater(Exception):
    """Nothing is wrong yet, but the chain's answers do not fit together right now (lag, a racing reorg)."""


class ChainFollower:
    def __init__(
        self,
        chain: ChainInfo,
        store: IndexerStore,
        rpc: ChainRpc,
        metrics: IndexerMetrics,
        tuning: FollowerTuning = FollowerTuning(),
        decoder: EventDecoder | None = None,
    ) -> None:
        self.chain = chain
        self.store = store
        self.rpc = rpc
        self.metrics = metrics
        self.tuning = tuning
        self.decoder = decoder or EventDecoder.for_chain(chain.contracts)
        factory = chain.contracts.get("SessionFactory")
        self.factory: str | None = to_checksum_address(factory) if factory else None
        self.label = str(chain.chain_id)
        self.status = ChainStatus(chain.chain_id, chain.name, chain.confirmations, chain.finality_window)
        self.batch = tuning.max_batch_blocks
        self.next_block = chain.deploy_block
        self.kept: dict[int, BlockHeader] = {}
        self.accounts: set[str] = set()
        self.halted = False
        self._loaded = False
        metrics.chain(chain.chain_id)

    # ------------------------------------------------------------------ state
    async def load(self) -> None:
        """(Re)read the cursor, kept headers and known session accounts from the store."""
        cur = await self.store.cursor(self.chain.chain_id, self.chain.deploy_block)
        self.next_block = cur.next_block
        self.halted = cur.halted
        self.status.reorgs_total = cur.reorgs_total
        self.status.indexed_block = max(0, cur.next_block - 1)
        if cur.halted:
            self._set_halted(cur.halt_reason)
        self.kept = await self.store.kept_blocks(self.chain.chain_id)
        self.accounts = (
            await self.store.account_addresses(self.chain.chain_id, self.factory) if self.factory else set()
        )
        self._loaded = True

    def _set_halted(self, reason: str) -> None:
        self.halted = True
        self.status.health = Health.HALTED
        self.status.detail = reason
        self.status.updated_at = time.time()
        self.metrics.chain_halted.labels(self.label).set(1)

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Follow until cancelled. Every failure is logged, counted and retried; a halt stops ingestion."""
        failures = 0
        while True:
            if not self._loaded:
                try:
                    await self.load()
                except Exception as exc:
                    log.exception("chain %s: cannot read the store", self.chain.name)
                    self._degraded(f"store: {type(exc).__name__}: {exc}")
                    failures += 1
                    await self._backoff(failures)
                    continue
            if self.halted:
                await asyncio.sleep(self.tuning.poll_interval)
                continue
            try:
                progressed = await self.step()
                failures = 0
            except RangeTooLarge as exc:
                self.metrics.rpc_errors.labels(self.label, exc.kind).inc()
                self.batch = max(self.tuning.min_batch_blocks, self.batch // 2)
                log.info("chain %s: log range refused, batch now %d blocks", self.chain.name, self.batch)
                continue
            except ChainRpcError as exc:
                failures += 1
                self.metrics.rpc_errors.labels(self.label, exc.kind).inc()
                if exc.kind == "timeout":
                    self.batch = max(self.tuning.min_batch_blocks, self.batch // 2)
                self._degraded(f"RPC {self.chain.rpc_url}: {exc}")
                log.warning("chain %s: %s (attempt %d)", self.chain.name, exc, failures)
                await self._backoff(failures)
                continue
            except CursorMoved as exc:
                log.warning("chain %s: %s; reloading", self.chain.name, exc)
                self._loaded = False
                continue
            except RetryLater as exc:
                log.debug("chain %s: %s", self.chain.name, exc)
                progressed = False
            except Exception as exc:
                failures += 1
                log.exception("chain %s: unexpected error; retrying", self.chain.name)
                self._degraded(f"{type(exc).__name__}: {exc}")
                self._loaded = False  # re-read the store: the failed step may have been half-done in memory
                await self._backoff(failures)
                continue
            if not progressed:
                await asyncio.sleep(self.tuning.poll_interval)

    def _degraded(self, detail: str) -> None:
        if self.halted:
            return
        self.status.health = Health.DEGRADED
        self.status.detail = detail[:500]
        self.status.updated_at = time.time()

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(self.tuning.retry_cap, self.tuning.retry_base * 2 ** min(attempt, 10)))

    async def catch_up(self, timeout: float = 60.0) -> None:
        """Step until the cursor reaches the target head (tests, benchmarks, rebuilds)."""
        if not self._loaded:
            await self.load()
        deadline = time.monotonic() + timeout
        while not self.halted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"chain {self.chain.name}: not caught up within {timeout}s")
            try:
                progressed = await self.step()
            except RangeTooLarge:
                self.batch = max(self.tuning.min_batch_blocks, self.batch // 2)
                progressed = True
            except RetryLater:
                await asyncio.sleep(0.05)
                progressed = True
            if not progressed:
                return

    # ------------------------------------------------------------------ one step
    async def step(self) -> bool:
        """Ingest the next range (or check the tip). True if the cursor moved."""
        head = await self.rpc.block_number()
        if head < self.status.head_block:
            # A load-balanced or restarted node behind the one we saw: wait for it, never roll back on it.
            self.metrics.lagging_rpc.labels(self.label).inc()
            log.info(
                "chain %s: head went back from %d to %d; waiting",
                self.chain.name,
                self.status.head_block,
                head,
            )
        self._observe_head(head)
        target = head - self.chain.confirmations
        nxt = self.next_block
        if nxt > target:
            if await self._check_tip():
                return True  # rolled back: the next steps re-ingest
            self._mark_following()
            return False
        # Blocks up to final_boundary are final: their headers are not fetched (catch-up speed); a range
        # may hold final blocks and unfinalized ones, whose headers are fetched and checked.
        final_boundary = head - self.chain.finality_window
        to = min(target, nxt + self.batch - 1)
        started = time.monotonic()
        await self._ingest_range(nxt, to, final_boundary, head)
        elapsed = time.monotonic() - started
        if to - nxt + 1 >= self.batch and elapsed < 2.0:
            self.batch = min(self.tuning.max_batch_blocks, self.batch * 2)
        if self.status.health == Health.DEGRADED or self.status.lag_blocks <= self.chain.confirmations:
            self._mark_following()
        return True

    def _observe_head(self, head: int) -> None:
        self.status.head_block = head
        self.status.updated_at = time.time()
        self.metrics.head.labels(self.label).set(head)
        self.metrics.lag.labels(self.label).set(self.status.lag_blocks)

    def _mark_following(self) -> None:
        if self.halted:
            return
        caught_up = self.status.lag_blocks <= self.chain.confirmations
        self.status.health = Health.FOLLOWING if caught_up else Health.SYNCING
        self.status.detail = ""

    async def _linked_headers(self, nxt: int, to: int) -> list[BlockHeader]:
        """Headers nxt..to, each linked to its parent; a reorg below nxt is handled, then RetryLater."""
        want_parent = nxt - 1 >= 0 and (nxt - 1) not in self.kept and nxt > self.chain.deploy_block
        numbers = list(range(nxt - 1 if want_parent else nxt, to + 1))
        got = await self.rpc.headers(numbers)
        if any(h is None for h in got):
            self.metrics.lagging_rpc.labels(self.label).inc()
            raise RetryLater(f"the node lacks some of blocks {numbers[0]}..{to} (lagging); waiting")
        headers: list[BlockHeader] = [h for h in got if h is not None]
        for a, b in itertools.pairwise(headers):
            if b.parent_hash != a.hash:
                raise RetryLater(f"blocks {a.number} and {b.number} do not link (chain moving under us)")
        below = self.kept.get(nxt - 1)
        first = headers[1] if want_parent else headers[0]
        if below is not None and first.parent_hash != below.hash:
            await self._handle_reorg()
            raise RetryLater("reorg handled")
        return headers

    async def _check_tip(self) -> bool:
        """True if the tip we hold was reorged away (and has been rolled back, or the chain halted)."""
        if not self.kept:
            return False
        top = max(self.kept)
        [h] = await self.rpc.headers([top])
        if h is None:
            self.metrics.lagging_rpc.labels(self.label).inc()
            return (
                False  # the node does not have our tip (lagging, or rolled back and not re-mined yet): wait
            )
        if h.hash != self.kept[top].hash:
            await self._handle_reorg()
            return True
        return False

    async def _handle_reorg(self) -> None:
        numbers = sorted(self.kept, reverse=True)
        canonical = await self.rpc.headers(numbers)
        if any(h is None for h in canonical):
            self.metrics.lagging_rpc.labels(self.label).inc()
            raise RetryLater("the node lacks blocks we hold; waiting before judging the reorg")
        indexed = self.next_block - 1
        ancestor = next(
            (
                n
                for n, h in zip(numbers, canonical, strict=True)
                if h is not None and h.hash == self.kept[n].hash
            ),
            None,
        )
        window = self.chain.finality_window
        if ancestor is None or indexed - ancestor > window:
            lowest = min(numbers)
            reason = (
                f"reorg deeper than the finality window ({window} blocks): none of the kept blocks "
                f"#{lowest}..#{indexed} is canonical any more (block #{lowest} was {self.kept[lowest].hash}, now "
                f"{canonical[-1].hash if canonical[-1] else '?'}); indexing stopped, operator action needed"
            )
            await self.store.halt(self.chain.chain_id, reason)
            self._set_halted(reason)
            log.error("chain %s HALTED: %s", self.chain.name, reason)
            return
        depth = indexed - ancestor
        removed = await self.store.rollback_to(self.chain.chain_id, self.next_block, ancestor)
        self.kept = {n: h for n, h in self.kept.items() if n <= ancestor}
        self.next_block = ancestor + 1
        self.status.indexed_block = ancestor
        self.status.reorgs_total += 1
        self.metrics.reorgs.labels(self.label).inc()
        self.metrics.reorg_depth.labels(self.label).set(depth)
        self.metrics.retracted.labels(self.label).inc(removed)
        if self.factory:
            self.accounts = await self.store.account_addresses(self.chain.chain_id, self.factory)
        log.warning(
            "chain %s: reorg of depth %d, rolled back to block %d (%s); %d events retracted",
            self.chain.name,
            depth,
            ancestor,
            self.kept[ancestor].hash,
            removed,
        )

    def _parts(self, nxt: int, to: int) -> list[tuple[int, int]]:
        """Sub-ranges of nxt..to for the fetch pipeline: up to `fetch_parts` of equal size, the first one
        cut to a quarter (nothing overlaps the wait for the first answer, so it should be short)."""
        parts = max(1, min(self.tuning.fetch_parts, (to - nxt + 1) // self.tuning.min_part_blocks))
        size = -(-(to - nxt + 1) // parts)
        if parts == 1:
            return [(nxt, to)]
        first = nxt + max(1, size // 4) - 1
        return [(nxt, first)] + [(a, min(to, a + size - 1)) for a in range(first + 1, to + 1, size)]

    async def _ingest_range(self, nxt: int, to: int, final_boundary: int, head: int) -> None:
        """Ingest blocks nxt..to in one transaction (headers of its unfinalized part, events, cursor).

        The logs are fetched in sub-ranges ("parts"), pipelined: the node answers part k+1 while this
        process decodes part k and adds its events to the range's transaction (decoding and inserting
        cost more than the node's own eth_getLogs, so doing them in turn would add the node's time to
        ours). The headers of the unfinalized part (blocks above `final_boundary`) are fetched and
        linked while the first part's logs are already on their way; every log of a block with a
        fetched header must carry that header's hash (else a reorg is racing our reads: RetryLater).
        Nothing moves, in the database or in memory, unless the whole range is committed.
        """
        parts = self._parts(nxt, to)
        fetching = asyncio.ensure_future(self._fetch_logs(*parts[0]))
        prune_below = to - self.chain.finality_window
        events = 0
        try:
            headers = (
                await self._linked_headers(max(nxt, final_boundary + 1), to) if to > final_boundary else []
            )
            hashes = {h.number: h.hash for h in headers}
            async with self.store.ingesting(self.chain.chain_id, nxt, to, headers, prune_below) as writer:
                for i, (a, b) in enumerate(parts):
                    logs = await fetching
                    if i + 1 < len(parts):
                        fetching = asyncio.ensure_future(self._fetch_logs(*parts[i + 1]))
                    decoded = await self._decode(logs, a, b, hashes)
                    await writer.add(decoded)
                    events += len(decoded)
        finally:
            if not fetching.done():
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetching
        # Committed: the in-memory state follows.
        for h in headers:
            self.kept[h.number] = h
        for n in [n for n in self.kept if n < prune_below]:
            del self.kept[n]
        self.next_block = to + 1
        self.metrics.events.labels(self.label).inc(events)
        self.status.indexed_block = to
        self.metrics.indexed.labels(self.label).set(to)
        self._observe_head(head)

    async def _fetch_logs(self, nxt: int, to: int) -> list[Any]:
        filters: list[tuple[list[str] | None, list[Any]]] = []
        if self.decoder.addresses:
            filters.append((self.decoder.addresses, []))
        if self.decoder.account_topics:
            filters.append((None, [self.decoder.account_topics]))
        return await self.rpc.get_logs_many(nxt, to, filters) if filters else []

    async def _decode(
        self, raw_logs: list[Any], nxt: int, to: int, hashes: dict[int, str]
    ) -> list[DecodedEvent]:
        """The range's logs, validated, in chain order, checked against `hashes` (block number -> hash of
        the fetched headers: logs of blocks without one, final blocks, are not checked), decoded.

        Yields to the event loop every `_DECODE_SLICE` logs, so that the response of the next part is
        read off the socket while this part is decoded (the node does not stall on a full socket buffer).
        """
        parsed = []
        parse = LogParser().parse  # remembers the strings validated in this batch (hashes, topics recur)
        for start in range(0, len(raw_logs), _DECODE_SLICE):
            if start:
                await asyncio.sleep(0)
            for raw in raw_logs[start : start + _DECODE_SLICE]:
                try:
                    parsed.append(parse(raw))
                except SkippedLog as skip:
                    self._skip(skip, raw)
        parsed.sort(key=_log_position)
        decoded: list[DecodedEvent] = []
        decode, accounts, factory = self.decoder.decode, self.accounts, self.factory
        last_block = last_index = -1  # sorted: a duplicate log position is next to its twin
        for start in range(0, len(parsed), _DECODE_SLICE):
            if start:
                await asyncio.sleep(0)
            for lg in parsed[start : start + _DECODE_SLICE]:
                number = lg.block_number
                if not nxt <= number <= to:
                    self._skip(
                        SkippedLog("out_of_range", f"log of block {number} answered for {nxt}..{to}"), lg
                    )
                    continue
                expected = hashes.get(number)
                if expected is not None and expected != lg.block_hash:
                    raise RetryLater(f"log of block {number} has hash {lg.block_hash}, header says otherwise")
                if lg.log_index == last_index and number == last_block:
                    self._skip(SkippedLog("malformed", f"duplicate log {number}/{lg.log_index}"), None)
                    continue
                last_block, last_index = number, lg.log_index
                try:
                    d = decode(lg, accounts)
                except SkippedLog as skip:
                    self._skip(skip, lg)
                    continue
                if d.name == "SessionCreated" and lg.address == factory:
                    accounts.add(str(d.args["account"]))
                decoded.append(d)
        return decoded

    def _skip(self, skip: SkippedLog, raw: Any) -> None:
        self.metrics.skipped_logs.labels(self.label, skip.reason).inc()
        level = logging.DEBUG if skip.reason == "foreign" else logging.WARNING
        log.log(level, "chain %s: skipped a log (%s): %s", self.chain.name, skip.reason, skip.detail)

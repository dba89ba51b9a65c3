"""The anchor queue's memory: it keeps the anchors of a checkpoint until the next one is anchored, not the
anchors of every checkpoint for as long as the executor runs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from services.executor.anchoring import Anchor, AnchorQueue


async def test_a_later_checkpoints_anchor_forgets_the_earlier_ones() -> None:
    recorded: list[tuple[str, int, list[int]]] = []

    async def on_anchored(sid: str, seq: int, cid: str, root: bytes, anchors: list[Anchor]) -> None:
        recorded.append((sid, seq, sorted(a.chain_id for a in anchors)))

    queue = AnchorQueue(chains=None, on_anchored=on_anchored, poll=0.01)  # type: ignore[arg-type]
    chain_ids = {"arbitrum": 1, "polygon": 2}

    async def anchor(job: Any, chain: str) -> Anchor:
        return Anchor(chain_ids[chain], job.seq, b"\x01" * 32, b"\x02" * 32)

    queue._anchor = anchor  # type: ignore[method-assign]
    runner = asyncio.create_task(queue.run())
    try:
        for seq in (1, 2, 3):
            for sid in ("7", "8"):
                queue.submit(sid, seq, f"cid-{seq}", bytes([seq]) * 32, ["arbitrum", "polygon"], 1)
            for _ in range(200):
                if queue.pending() == 0 and len(recorded) == 4 * seq:
                    break
                await asyncio.sleep(0.01)
        # each checkpoint's record lists both chains' anchors once the second lands ...
        assert ("7", 3, [1, 2]) in recorded and ("8", 3, [1, 2]) in recorded
        assert ("7", 1, [1, 2]) in recorded
        # ... and only the newest checkpoint's anchors are kept per session
        assert {sid: sorted(by_seq) for sid, by_seq in queue._done.items()} == {"7": [3], "8": [3]}
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

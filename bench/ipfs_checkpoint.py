"""What does a verified checkpoint cost over a bare IPFS add?

Starts its own js-ipfs node, then for N checkpoint documents (session_id, seq, state_root and a task log
of --tasks entries) times, interleaved on the same node:

* checkpoint: canonical dag-cbor encode + local CID + dag/put (pinned) + CID check (CheckpointWriter);
* checkpoint+enc: the same with the AES-256-GCM envelope (stored raw via add);
* baseline: aioipfs ``add_bytes`` of the same encoded bytes (cid_version=1, raw_leaves, pinned), no checks;
* read: CheckpointReader (fetch + CID verify + decode) vs aioipfs ``block/get`` of the same block.

Prints median / p90 per-op milliseconds and the ratios against the baseline measured in this run (the
machine is shared and noisy: compare ratios, not absolute numbers).

    .venv/bin/python bench/ipfs_checkpoint.py [--n 200] [--tasks 50] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aioipfs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit
from benchkit import Figure

from agentgpt.ipfs import CheckpointReader, CheckpointWriter, KuboStore, encode, generate_key
from apps.localnet.ipfs import IpfsNode


def make_checkpoint(seq: int, tasks: int) -> dict[str, Any]:
    return {
        "session_id": str(2**200 + 1),
        "seq": seq,
        "state_root": os.urandom(32),
        "tasks": [
            {"i": i, "action": "swap", "tx_hash": os.urandom(32), "gas_used": 91_000 + i, "ok": True}
            for i in range(tasks)
        ],
        "context": {"epoch": 1, "adapter": "planner/v1", "decorators": ["ofac_filter", "gas_optimizer_v3"]},
    }


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = await fn()
    return time.perf_counter() - t0, result


def stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs) * 1e3, xs[int(0.9 * (len(xs) - 1))] * 1e3


async def run(api: str, n: int, tasks: int) -> dict[str, Figure]:
    """The figures (printing the readable table): median write and read costs against the baselines."""
    store = KuboStore(api, timeout=30)
    client = aioipfs.AsyncIPFS(maddr=api)
    key = generate_key()
    writer, sealed_writer = CheckpointWriter(store), CheckpointWriter(store, key=key)
    reader = CheckpointReader(store, key=key)
    times: dict[str, list[float]] = {
        k: [] for k in ("checkpoint", "checkpoint+enc", "baseline", "read", "block/get")
    }
    size = 0
    try:
        print(await store.probe())
        for seq in range(-5, n):  # 5 warm-up rounds, not recorded
            doc = make_checkpoint(max(seq, 0), tasks)
            data = encode(doc)
            size = len(data)

            async def add(data: bytes = data) -> Any:
                return await client.core.add_bytes(
                    data, cid_version=1, raw_leaves=True, chunker="size-262144", pin=True
                )

            ops: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("checkpoint", functools.partial(writer.write, doc)),
                ("checkpoint+enc", functools.partial(sealed_writer.write, doc)),
                ("baseline", add),
            ]
            if seq % 2:  # alternate the order so neither side always runs on a warmer node
                ops.reverse()
            results: dict[str, Any] = {}
            for name, op in ops:
                dt, results[name] = await timed(op)
                if seq >= 0:
                    times[name].append(dt)
            cid = results["checkpoint"].cid
            dt_read, got = await timed(functools.partial(reader.read, cid, seq=doc["seq"]))
            assert got == doc
            dt_get, _ = await timed(functools.partial(client.block.get, cid))
            if seq >= 0:
                times["read"].append(dt_read)
                times["block/get"].append(dt_get)
    finally:
        await store.close()
        await client.close()

    base_med, _ = stats(times["baseline"])
    get_med, _ = stats(times["block/get"])
    print(f"\n{n} checkpoints, {tasks} task entries each, {size} bytes of dag-cbor per checkpoint")
    print(f"{'operation':<16}{'median ms':>10}{'p90 ms':>9}{'ratio':>8}")
    figures: dict[str, Figure] = {}
    for name, ref in (
        ("baseline", base_med),
        ("checkpoint", base_med),
        ("checkpoint+enc", base_med),
        ("block/get", get_med),
        ("read", get_med),
    ):
        med, p90 = stats(times[name])
        print(f"{name:<16}{med:>10.2f}{p90:>9.2f}{med / ref:>7.2f}x")
        if name not in ("baseline", "block/get"):
            figures[f"{name} (median)"] = Figure(med, "ms", ref, better="lower")
    print("ratios: writes vs baseline (aioipfs add, same bytes); read vs aioipfs block/get")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="checkpoints to time (default 200)")
    parser.add_argument("--tasks", type=int, default=50, help="task-log entries per checkpoint (default 50)")
    parser.add_argument("--api", default=os.environ.get("AGENTGPT_BENCH_IPFS_API", ""), help="use this node")
    benchkit.add_json_option(parser)
    args = parser.parse_args()
    if args.api:
        figures = asyncio.run(run(args.api, args.n, args.tasks))
    else:
        with IpfsNode() as node:
            figures = asyncio.run(run(node.api, args.n, args.tasks))
    benchkit.write_json(args.json, figures)


if __name__ == "__main__":
    main()

"""`agentgpt verify` cost per checkpoint: the verifier the CLI and the recovery oracle run
(agentgpt.verify.CheckpointVerifier), over a session history of N format-v2 checkpoints of 50 signed
entries each, stored on a real IPFS node, against a baseline measured in the same run: reading the same
N documents' bytes back from the node (what any verifier must do at least).

Two runs of the verifier, each from a fresh verifier (no remembered histories): bodies in plaintext
(every entry hash, EIP-712 signature, result digest and the state root rechecked) and bodies sealed with
the session's key, opened with the owner's key (ECIES unwrap + AES-GCM per checkpoint, then the same
checks). The chains' events come from an in-memory event source (the chain reads are the RPC's cost, not
the verifier's; `agentgpt verify` adds one eth_getLogs per event name and chain).

    .venv/bin/python bench/verify.py [--checkpoints 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit
from benchkit import Figure
from multiformats import CID

from agentgpt.checkpoint_format import Domain, checkpoint_document, entry_digest, sign
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.indexer.v1 import indexer_pb2 as ix
from agentgpt.ipfs import CheckpointReader, CheckpointWriter, KuboStore
from agentgpt.sealing import Keyring, Sealing, new_session_key
from agentgpt.tasklog import ZERO_HASH, ExecutorKey, TaskLog
from agentgpt.verify import CheckpointVerifier
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from apps.localnet.ipfs import IpfsNode

SID, HOME = "7", 31337
FACTORY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ENTRIES = 50


class Events:
    def __init__(self) -> None:
        self.events: list[ix.ChainEvent] = []

    def add(self, name: str, args: dict[str, Any]) -> None:
        self.events.append(
            ix.ChainEvent(chain_id=HOME, name=name, args_json=json.dumps(args), session_id=SID)
        )

    async def list_events(self, req: ix.ListEventsRequest) -> ix.ListEventsResponse:
        return ix.ListEventsResponse(events=[e for e in self.events if e.name in set(req.filter.names)])


async def history(store: KuboStore, n: int, sealing: Sealing | None) -> tuple[Events, list[str]]:
    """N linked checkpoints of one session, all anchored on the home chain."""
    domain, key = Domain(HOME, FACTORY), ExecutorKey(DEV_PRIVATE_KEYS[1])
    writer = CheckpointWriter(store)
    log = TaskLog(SID, key, sign_entry=lambda s, h: sign(key, entry_digest(domain, SID, s, h)))
    events = Events()
    events.add("ExecutorAssigned", {"sessionId": SID, "executor": key.address, "epoch": "1"})
    prev_cid, prev_root, prev_seq, cids = "", ZERO_HASH, 0, []
    for _ in range(n):
        log_start = log.head
        for _ in range(ENTRIES):
            log.append(
                log.seq + 1, "analyze_market", "succeeded", {"outputs": [{"p": log.seq}]}, context_epoch=1
            )
        results = dict(log.results)
        doc = checkpoint_document(
            domain=domain,
            session_id=SID,
            seq=log.seq,
            epoch=1,
            prev_cid=prev_cid,
            prev_seq=prev_seq,
            prev_root=prev_root,
            log_start=log_start,
            entries=log.take_pending(),
            results=results,
            key=key,
            context=[{"epoch": 1}],
            budget={"budget": str(10**20), "spent": str(log.seq * 10**15)},
            memory={"analyze_market": {"p": log.seq}},
            chains=["home"],
        )
        cid, _ = await writer.write(doc, sealing=sealing)
        events.add(
            "CheckpointAnchored",
            {
                "homeChainId": str(HOME),
                "sessionId": SID,
                "seq": str(log.seq),
                "writer": key.address,
                "epoch": "1",
                "stateRoot": "0x" + bytes(doc["state_root"]).hex(),
                "cid": "0x" + bytes(CID.decode(cid)).hex(),
            },
        )
        prev_cid, prev_root, prev_seq = cid, bytes(doc["state_root"]), log.seq
        cids.append(cid)
    return events, cids


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=int, default=40)
    benchkit.add_json_option(parser)
    args = parser.parse_args()
    benchkit.write_json(args.json, await measure(args.checkpoints))


async def measure(n: int) -> dict[str, Figure]:
    """The figures (printing the readable text): verifier cost per checkpoint against fetching it."""
    owner = DEV_PRIVATE_KEYS[2]
    sealing = Sealing(
        new_session_key(1), (ExecutorKey(owner).public_key, ExecutorKey(DEV_PRIVATE_KEYS[1]).public_key)
    )
    with IpfsNode() as ipfs:
        async with KuboStore(ipfs.api, timeout=30) as store:
            rows = []
            for label, seal, keyring in (
                ("plaintext bodies", None, None),
                ("sealed bodies, owner's key", sealing, Keyring(private_key=owner)),
            ):
                events, cids = await history(store, n, seal)
                t0 = time.perf_counter()
                for cid in cids:
                    await store.get(cid)
                fetch = time.perf_counter() - t0
                verifier = CheckpointVerifier(
                    events, CheckpointReader(store, keyring=keyring), domain=Domain(HOME, FACTORY)
                )
                t0 = time.perf_counter()
                resp, rejected = await verifier.newest_verified(SID)
                took = time.perf_counter() - t0
                assert resp.verification.verified and not rejected and len(verifier.walked) == n, resp
                assert resp.checkpoint == cpb.Checkpoint(
                    seq=n * ENTRIES, cid=cids[-1], state_root=resp.checkpoint.state_root, session_id=SID
                )
                rows.append((label, took, fetch))
    print(f"agentgpt verify, {n} checkpoints of {ENTRIES} signed entries each (format v2), one session:")
    for label, took, fetch in rows:
        print(
            f"  {label:<28} {took / n * 1e3:7.2f} ms per checkpoint  "
            f"({took / (n * ENTRIES) * 1e6:6.0f} us per entry; fetch alone {fetch / n * 1e3:6.2f} ms: "
            f"ratio {took / fetch:5.2f})"
        )
    return {
        f"verify per checkpoint, {label}": Figure(took / n * 1e3, "ms", fetch / n * 1e3, better="lower")
        for label, took, fetch in rows
    }


if __name__ == "__main__":
    asyncio.run(main())

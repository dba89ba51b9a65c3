"""Checkpoint verification: what the recovery oracle trusts before a session is brought back.

For a session, the indexer names the latest anchored checkpoint on each chain. Newest first, each
candidate is fetched from IPFS and rechecked end to end:

1. the bytes hash to the anchored CID (content addressing; a sealed checkpoint must open with the
   configured key, its envelope bound to the session and seq);
2. the document's task log links from its `prev_root`, every entry hash matches its content, and the
   head equals the state root anchored on chain;
3. every entry is signed by the executor key the document names, and that key's address is the
   executor assigned to the session on its home chain (after a reassignment, checkpoints signed by the
   previous executor need the anchor's writer instead: the recovery milestone adds it).

The first candidate that passes is the verified state; the newer ones that failed are reported as
rejected, with the reason. An IPFS or indexer outage is UNAVAILABLE (retry), never a rejection.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import grpc

from agentgpt.clients import IndexerClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import NotFound, RpcError, Unavailable
from agentgpt.indexer.v1 import indexer_pb2 as ix
from agentgpt.ipfs import CheckpointReader
from agentgpt.ipfs.errors import ContentIntegrityError, ContentNotFound, DocumentFormatError
from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.tasklog import TaskLogError, verify_checkpoint_log


@dataclass(frozen=True)
class Candidate:
    checkpoint: cpb.Checkpoint
    chains: tuple[int, ...]  # chains whose latest anchor is this checkpoint


def candidates(anchors: ix.GetLatestAnchorResponse) -> list[Candidate]:
    """The distinct anchored checkpoints, newest first, with the chains that anchor each."""
    by_key: dict[tuple[int, str, bytes], list[ix.AnchorOnChain]] = defaultdict(list)
    for a in anchors.per_chain:
        cp = a.checkpoint
        by_key[(cp.seq, cp.cid, bytes(cp.state_root))].append(a)
    out = [
        Candidate(found[0].checkpoint, tuple(sorted(a.chain_id for a in found)))
        for _, found in sorted(by_key.items(), key=lambda kv: -kv[0][0])
    ]
    return out


class CheckpointVerifier:
    def __init__(self, indexer: IndexerClient, reader: CheckpointReader) -> None:
        self.indexer = indexer
        self.reader = reader

    async def verified_state(self, session_id: str) -> pb.GetVerifiedStateResponse:
        try:
            anchors = await self.indexer.get_latest_anchor(session_id)
        except RpcError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise Unavailable(f"indexer: {exc.details}") from None
            anchors = ix.GetLatestAnchorResponse()
        found = candidates(anchors)
        if not found:
            raise NotFound(f"session {session_id} has no anchored checkpoint on any chain")
        executor = await self._assigned_executor(session_id)
        rejected: list[pb.Verification] = []
        resp = pb.GetVerifiedStateResponse()
        for cand in found:
            v = await self.check(cand.checkpoint, executor)
            v.anchored_on.extend(cand.chains)
            if v.verified:
                resp.checkpoint.CopyFrom(cand.checkpoint)
                resp.verification.CopyFrom(v)
                return resp
            resp.rejected.append(cand.checkpoint)
            rejected.append(v)
        reasons = "; ".join(f"seq {c.seq}: {v.failure}" for c, v in zip(resp.rejected, rejected, strict=True))
        resp.verification.CopyFrom(
            pb.Verification(verified=False, failure=f"no anchored checkpoint verifies ({reasons})")
        )
        return resp

    async def check(self, cp: cpb.Checkpoint, executor: str) -> pb.Verification:
        """Every check on one anchored checkpoint; `executor` is the assigned executor ("" = unknown)."""
        v = pb.Verification()
        try:
            doc = await self.reader.read(cp.cid, session_id=cp.session_id, seq=cp.seq)
        except DocumentFormatError as exc:
            v.cid_matches_content = True
            v.failure = exc.message
            return v
        except ContentIntegrityError as exc:
            v.failure = exc.message
            return v
        except ContentNotFound as exc:  # anchored but gone: the data loss a claim can be filed for
            v.failure = f"checkpoint {cp.cid} is not retrievable from IPFS: {exc.message}"
            return v
        except Unavailable as exc:
            raise Unavailable(f"IPFS: cannot fetch checkpoint {cp.cid}: {exc.message}") from None
        v.cid_matches_content = True
        try:
            log = verify_checkpoint_log(doc)
        except TaskLogError as exc:
            v.failure = f"checkpoint {cp.cid}: task log: {exc}"
            return v
        root = bytes(cp.state_root)
        v.state_root_matches = doc["state_root"] == root and log.head == root
        if not v.state_root_matches:
            v.failure = f"checkpoint {cp.cid}: its task log ends at 0x{log.head.hex()}, the anchor says 0x{root.hex()}"
            return v
        if executor and log.executor.lower() != executor.lower():
            v.failure = (
                f"checkpoint {cp.cid} is signed by {log.executor}, not the assigned executor {executor}"
            )
            return v
        v.signatures_valid = True
        v.verified = True
        return v

    async def _assigned_executor(self, session_id: str) -> str:
        try:
            state = await self.indexer.get_on_chain_session(session_id)
        except RpcError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return ""
            raise Unavailable(f"indexer: {exc.details}") from None
        return state.executor

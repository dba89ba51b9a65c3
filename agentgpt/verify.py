"""Checkpoint verification: what the recovery oracle trusts before a session is brought back, and what
`agentgpt verify` checks from the chains and IPFS alone (one code for both).

What the chains say about a session comes from an EventSource: the indexer's events for the oracle
(IndexerClient), the chains' own logs for `agentgpt verify` (ChainLogs): every CheckpointAnchored (the
home chain's SessionFactory and every secondary chain's AnchorRegistry) and every ExecutorAssigned (the
home chain: who was assigned at which epoch). Newest first, each anchored checkpoint is rechecked end to end:

1. its anchors agree: every chain that anchored this seq anchored the same CID and state root;
2. the bytes hash to the anchored CID (content addressing; a sealed checkpoint must open with the
   configured key, its envelope bound to the session and seq);
3. its task log links from its `prev_root`, every entry hash matches its content, every entry is signed
   by the key the document names, and the head equals the anchored state root;
4. its signer wrote its anchors (each anchor's `writer`) and was the executor assigned on the home chain
   at the anchor's epoch — read from the chain's assignment events, not from whoever is assigned now;
5. its history holds: `prev_cid` names the previous checkpoint, whose state root is this one's
   `prev_root` and whose seq ends where this one's entries begin, whose CID is the one anchored at that
   seq if that seq was anchored, and whose signer was assigned no later than this one's — and so on back
   to the first checkpoint (empty `prev_cid`, zero `prev_root`, entries from task 1). An emptied or
   rewritten `prev_cid` therefore fails.

The first checkpoint that passes is the verified state; the newer ones that failed are reported as
rejected, with the reason. A session the indexer has no assignment record of fails every check (a missing
record is a failure, never a skipped check). An IPFS or indexer outage is UNAVAILABLE (retry), never a
rejection. Histories already verified are remembered by CID, so a re-verification reads only what is new.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from multiformats import CID

from agentgpt.checkpoint_format import Domain, verify_document
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import FailedPrecondition, NotFound, RpcError, Unavailable
from agentgpt.indexer.v1 import indexer_pb2 as ix
from agentgpt.ipfs import CheckpointReader
from agentgpt.ipfs.errors import ContentIntegrityError, ContentNotFound, DocumentFormatError
from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.tasklog import ZERO_HASH, TaskLogError, VerifiedLog
from agentgpt.zk.batch import Groth16Worker, ZkError

EVENT_NAMES = ("CheckpointAnchored", "ExecutorAssigned", "SessionFinalized", "SessionStateChanged")
COMPLETED, TERMINATED = 4, 5  # SessionFactory.SessionState
EXPIRY_REASONS = {2: "draft expired", 3: "active time ran out", 4: "paused too long"}  # TerminalReason


class EventSource(Protocol):
    """Where the chains' events about a session come from (the indexer, or the chains' logs)."""

    async def list_events(self, req: ix.ListEventsRequest) -> ix.ListEventsResponse: ...


PAGE = 500


@dataclass(frozen=True)
class Anchor:
    chain_id: int
    seq: int
    cid: str
    state_root: bytes
    writer: str
    epoch: int


@dataclass(frozen=True)
class FinalRecord:
    """SessionFinalized: the history a completion or termination closed on the home chain."""

    seq: int
    checkpoint_hash: bytes  # keccak256(abi.encode(keccak256(cid), stateRoot)) of the final checkpoint
    log_cid: str  # the archived event log on IPFS
    arweave_tx: str  # its copy on Arweave (base64url id; "" when none)


@dataclass
class ChainRecord:
    """A session's checkpoints and executors as its chains record them."""

    home_chain_id: int = 0
    anchors: dict[int, list[Anchor]] = field(default_factory=lambda: defaultdict(list))  # seq -> anchors
    assignments: list[tuple[int, str]] = field(default_factory=list)  # (epoch, executor), home chain
    final: FinalRecord | None = None
    ended: int = 0  # the final SessionState it reached (COMPLETED, TERMINATED), 0 while live
    end_reason: int = 0  # its TerminalReason

    def epochs_of(self, executor: str) -> list[int]:
        return sorted(e for e, who in self.assignments if who.lower() == executor.lower())

    def checkpoint(self, seq: int) -> cpb.Checkpoint:
        a = self.anchors[seq][0]
        return cpb.Checkpoint(seq=seq, cid=a.cid, state_root=a.state_root)


class Rejected(Exception):
    """A checkpoint, or its history, does not verify: the message says why."""


def _cid_text(value: str) -> str:
    raw = bytes.fromhex(value.removeprefix("0x"))
    return str(CID.decode(raw).encode("base32"))


def _arweave_id(raw: bytes) -> str:
    if not any(raw):
        return ""
    from agentgpt.arweave import tx_id_from_bytes

    return tx_id_from_bytes(raw)


def record_from_events(events: list[ix.ChainEvent]) -> ChainRecord:
    """The ChainRecord of one session from its indexed events (removed ones, retracted by a reorg, skipped)."""
    rec = ChainRecord()
    assigned = [e for e in events if e.name == "ExecutorAssigned" and not e.removed]
    if assigned:
        rec.home_chain_id = assigned[0].chain_id
    for e in assigned:
        args = json.loads(e.args_json)
        rec.assignments.append((int(args["epoch"]), str(args["executor"])))
    for e in events:
        if e.removed or (rec.home_chain_id and e.chain_id != rec.home_chain_id):
            continue
        if e.name == "SessionStateChanged":
            args = json.loads(e.args_json)
            if int(args["to"]) in (COMPLETED, TERMINATED):
                rec.ended, rec.end_reason = int(args["to"]), int(args.get("reason", 0))
        elif e.name == "SessionFinalized":
            args = json.loads(e.args_json)
            tx = bytes.fromhex(str(args["arweaveTx"]).removeprefix("0x"))
            rec.final = FinalRecord(
                seq=int(args["seq"]),
                checkpoint_hash=bytes.fromhex(str(args["checkpointHash"]).removeprefix("0x")),
                log_cid=_cid_text(str(args["logCid"])) if str(args["logCid"]) not in ("", "0x") else "",
                arweave_tx=_arweave_id(tx),
            )
    for e in events:
        if e.name != "CheckpointAnchored" or e.removed:
            continue
        args = json.loads(e.args_json)
        if rec.home_chain_id and int(args.get("homeChainId", e.chain_id)) != rec.home_chain_id:
            continue  # another home chain's session with the same id
        try:
            cid = _cid_text(str(args["cid"]))
        except ValueError:
            cid = str(args["cid"])  # not a CID at all: it will not match any document
        a = Anchor(
            chain_id=e.chain_id,
            seq=int(args["seq"]),
            cid=cid,
            state_root=bytes.fromhex(str(args["stateRoot"]).removeprefix("0x")),
            writer=str(args["writer"]),
            epoch=int(args["epoch"]),
        )
        rec.anchors[a.seq].append(a)
    rec.assignments.sort()
    return rec


@dataclass(frozen=True)
class _Verified:
    seq: int
    epoch: int  # the assignment epoch its signer held
    root: bytes = ZERO_HASH  # its state root
    log_head: bytes = ZERO_HASH  # where its task log ends
    zk: tuple[int, int] | None = None  # zk_batch_prover: the Poseidon root and proved spend it ends at


def _zk_end(log: VerifiedLog) -> tuple[int, int] | None:
    if not log.batches:
        return None
    last = log.batches[-1][0]
    return (last.new_root, last.spent_after)


def _zk_link(cid: str, log: VerifiedLog, prev_end: tuple[int, int] | None) -> None:
    """A checkpoint's proofs continue where the previous checkpoint's ended (root 0 and spend 0 for the
    first proved one); once a session's checkpoints are proved, every later one with tasks is."""
    if not log.batches:
        if prev_end is not None and log.entries:
            raise Rejected(f"checkpoint {cid} carries no zk proofs, though the checkpoint before it does")
        return
    first = log.batches[0][0]
    if (first.prev_root, first.spent_before) != (prev_end or (0, 0)):
        raise Rejected(
            f"checkpoint {cid}: zk: its proofs do not continue the previous checkpoint's Poseidon root and "
            "proved spend"
        )


class CheckpointVerifier:
    def __init__(
        self,
        indexer: EventSource,
        reader: CheckpointReader,
        *,
        domain: Domain | None = None,
        require_body: bool = True,
        zk: Groth16Worker | None = None,
    ) -> None:
        """`domain`: the home chain's SessionFactory, which v2 signatures must be made for (None: the one
        each document names). `require_body`: a v2 checkpoint whose body is sealed and cannot be opened
        is rejected (the oracle); False accepts it on its header alone (`agentgpt verify` without a key
        reports it as such: VerifiedLog.sealed)."""
        self.indexer = indexer
        self.reader = reader
        self.domain = domain
        self.require_body = require_body
        # checks zk_batch_prover proofs (snarkjs when this machine has it, else pure-Python pairings)
        self.zk = zk or Groth16Worker()
        self.sealed: set[str] = set()  # CIDs accepted on their header alone (body sealed, no key)
        # the history walked by the last successful check, newest first: (cid, seq, epoch, signer)
        self.walked: list[tuple[str, int, int, str]] = []
        self._histories: dict[tuple[str, str], _Verified] = {}  # (session, cid) whose history verified

    async def record(self, session_id: str) -> ChainRecord:
        events: list[ix.ChainEvent] = []
        token = ""
        while True:
            req = ix.ListEventsRequest(
                filter=ix.EventFilter(session_id=session_id, names=list(EVENT_NAMES)),
                page=cpb.PageRequest(page_size=PAGE, page_token=token),
            )
            try:
                resp = await self.indexer.list_events(req)
            except RpcError as exc:
                raise Unavailable(f"indexer: {exc.details}") from None
            events.extend(resp.events)
            token = resp.page.next_page_token
            if not token:
                return record_from_events(events)

    async def verified_state(self, session_id: str) -> pb.GetVerifiedStateResponse:
        resp, _ = await self.newest_verified(session_id)
        return resp

    async def newest_verified(
        self, session_id: str
    ) -> tuple[pb.GetVerifiedStateResponse, list[pb.RejectedCheckpoint]]:
        """The newest anchored checkpoint that verifies (unset when none does), and every newer one that
        did not, with its reason. NotFound when nothing is anchored yet."""
        rec = await self.record(session_id)
        if not rec.anchors:
            raise NotFound(f"session {session_id} has no anchored checkpoint on any chain")
        resp = pb.GetVerifiedStateResponse()
        rejected: list[pb.RejectedCheckpoint] = []
        for seq in sorted(rec.anchors, reverse=True):
            cp = rec.checkpoint(seq)
            cp.session_id = session_id
            v = await self.check(cp, rec)
            v.anchored_on.extend(sorted({a.chain_id for a in rec.anchors[seq]}))
            if v.verified:
                resp.checkpoint.CopyFrom(cp)
                resp.verification.CopyFrom(v)
                return resp, rejected
            resp.rejected.append(cp)
            rejected.append(pb.RejectedCheckpoint(checkpoint=cp, reason=v.failure))
        reasons = "; ".join(f"seq {r.checkpoint.seq}: {r.reason}" for r in rejected)
        resp.verification.CopyFrom(
            pb.Verification(verified=False, failure=f"no anchored checkpoint verifies ({reasons})")
        )
        return resp, rejected

    async def check(self, cp: cpb.Checkpoint, rec: ChainRecord) -> pb.Verification:
        """Every check on one anchored checkpoint and its history, against what the chains record."""
        v = pb.Verification()
        try:
            anchors = rec.anchors.get(cp.seq, [])
            different = {(a.cid, a.state_root) for a in anchors} - {(cp.cid, bytes(cp.state_root))}
            if different:
                shown = ", ".join(f"chain {a.chain_id}: {a.cid}" for a in anchors)
                raise Rejected(f"the anchors of checkpoint {cp.seq} disagree across chains ({shown})")
            if not rec.assignments:
                raise Rejected(
                    f"the indexer has no record of the executors assigned to session {cp.session_id} on "
                    "its home chain, so no signer can be checked"
                )
            doc, log = await self._open(cp.session_id, cp.cid, cp.seq, v)
            root = bytes(cp.state_root)
            v.state_root_matches = doc["state_root"] == root and log.head == root
            if not v.state_root_matches:
                raise Rejected(
                    f"checkpoint {cp.cid}: its task log ends at 0x{log.head.hex()}, the anchor says 0x{root.hex()}"
                )
            epoch = self._signer_epoch(cp.cid, log.executor, anchors, rec, bound=None)
            v.signatures_valid = True
            await self._history(cp.session_id, cp.cid, doc, log, epoch, rec)
        except Rejected as exc:
            v.failure = str(exc)
            return v
        v.verified = True
        return v

    async def _open(
        self, session_id: str, cid: str, seq: int, v: pb.Verification | None = None
    ) -> tuple[Mapping[str, Any], VerifiedLog]:
        try:
            doc = await self.reader.read(cid, session_id=session_id, seq=seq)
        except DocumentFormatError as exc:
            if v is not None:
                v.cid_matches_content = True
            raise Rejected(exc.message) from None
        except ContentIntegrityError as exc:
            raise Rejected(exc.message) from None
        except FailedPrecondition as exc:  # sealed, and no key this reader holds opens it
            raise Rejected(f"checkpoint {cid}: {exc.message}") from None
        except ContentNotFound as exc:  # anchored but gone: the data loss a claim can be filed for
            raise Rejected(f"checkpoint {cid} is not retrievable from IPFS: {exc.message}") from None
        except Unavailable as exc:
            raise Unavailable(f"IPFS: cannot fetch checkpoint {cid}: {exc.message}") from None
        if v is not None:
            v.cid_matches_content = True
        try:
            log = verify_document(doc, self.domain)
        except TaskLogError as exc:
            raise Rejected(f"checkpoint {cid}: task log: {exc}") from None
        if log.sealed:
            if self.require_body:
                raise Rejected(
                    f"checkpoint {cid}: its body is sealed and this verifier has no key to open it"
                )
            self.sealed.add(cid)
        return doc, log

    @staticmethod
    def _signer_epoch(
        cid: str, signer: str, anchors: list[Anchor], rec: ChainRecord, *, bound: int | None
    ) -> int:
        """The assignment epoch under which `signer` wrote this checkpoint; Rejected if there is none."""
        for a in anchors:
            if a.writer.lower() != signer.lower():
                raise Rejected(
                    f"checkpoint {cid} is signed by {signer}, but chain {a.chain_id} shows {a.writer} anchoring it"
                )
        epochs = rec.epochs_of(signer)
        home = [a.epoch for a in anchors if a.chain_id == rec.home_chain_id]
        if home:
            epochs = [e for e in epochs if e == home[0]]
        if not epochs:
            assigned = ", ".join(f"{who} (epoch {e})" for e, who in rec.assignments)
            raise Rejected(
                f"checkpoint {cid} is signed by {signer}, who was not the assigned executor when it was "
                f"written (assigned on chain: {assigned})"
            )
        if bound is not None and epochs[0] > bound:
            raise Rejected(
                f"checkpoint {cid} was signed by {signer} at epoch {epochs[0]}, later than the checkpoint "
                f"after it (epoch {bound}): that one was written by an executor fenced out before"
            )
        return max(e for e in epochs if bound is None or e <= bound)

    async def _history(
        self,
        session_id: str,
        cid: str,
        doc: Mapping[str, Any],
        log: VerifiedLog,
        epoch: int,
        rec: ChainRecord,
    ) -> None:
        """Walk `prev_cid` back to the first checkpoint; Rejected at the first link that does not hold."""
        await self._proofs(cid, log)
        chain: list[tuple[str, _Verified]] = [
            (cid, _Verified(int(doc["seq"]), epoch, log.head, log.log_head, _zk_end(log)))
        ]
        signers = [log.executor]
        while True:
            prev_cid, prev_root = log.prev_cid, bytes(doc["prev_root"])
            prev_seq = log.prev_seq
            if not prev_cid:
                if prev_root != ZERO_HASH or prev_seq != 0 or log.log_start != ZERO_HASH:
                    raise Rejected(
                        f"checkpoint {cid} names no previous checkpoint, yet its log starts after task "
                        f"{prev_seq} from 0x{prev_root.hex()}: its history is cut"
                    )
                _zk_link(cid, log, None)
                break
            anchored = rec.anchors.get(prev_seq, [])
            if anchored and any(a.cid != prev_cid for a in anchored):
                raise Rejected(
                    f"checkpoint {cid} names {prev_cid} as its previous checkpoint, but seq {prev_seq} was "
                    f"anchored as {anchored[0].cid}"
                )
            known = self._histories.get((session_id, prev_cid))
            if known is not None:  # verified before, with all of its own history
                if (known.root, known.log_head) != (prev_root, log.log_start):
                    raise Rejected(
                        f"checkpoint {cid} names {prev_cid} as its previous checkpoint, but that one's state "
                        f"root or log head is not where this one starts"
                    )
                if known.seq != prev_seq:
                    raise Rejected(
                        f"checkpoint {cid} names {prev_cid} as its previous checkpoint, but that one ends at "
                        f"task {known.seq}, not task {prev_seq}"
                    )
                if known.epoch > epoch:
                    raise Rejected(
                        f"checkpoint {cid} was written at epoch {epoch}, after {prev_cid} of epoch "
                        f"{known.epoch}: it was written by an executor fenced out before"
                    )
                _zk_link(cid, log, known.zk)
                break
            try:
                prev_doc, prev_log = await self._open(session_id, prev_cid, prev_seq)
            except Rejected as exc:
                raise Rejected(f"checkpoint {cid}: its previous checkpoint {prev_cid}: {exc}") from None
            if int(prev_doc["seq"]) != prev_seq or prev_log.head != prev_root:
                raise Rejected(
                    f"checkpoint {cid} names {prev_cid} as its previous checkpoint, but that one ends at task "
                    f"{prev_doc['seq']} with 0x{prev_log.head.hex()}, not task {prev_seq} with 0x{prev_root.hex()}"
                )
            if prev_log.log_head != log.log_start:
                raise Rejected(
                    f"checkpoint {cid}'s task log starts from 0x{log.log_start.hex()}, but its previous "
                    f"checkpoint {prev_cid} ends its log at 0x{prev_log.log_head.hex()}"
                )
            _zk_link(cid, log, _zk_end(prev_log))
            await self._proofs(prev_cid, prev_log)
            epoch = self._signer_epoch(prev_cid, prev_log.executor, anchored, rec, bound=epoch)
            chain.append(
                (prev_cid, _Verified(prev_seq, epoch, prev_log.head, prev_log.log_head, _zk_end(prev_log)))
            )
            signers.append(prev_log.executor)
            cid, doc, log = prev_cid, prev_doc, prev_log
        for c, verified in chain:
            self._histories[(session_id, c)] = verified
        self.walked = [(c, v.seq, v.epoch, who) for (c, v), who in zip(chain, signers, strict=True)]

    async def _proofs(self, cid: str, log: VerifiedLog) -> None:
        """Every zk_batch_prover proof of a checkpoint verifies (their statements were checked to chain and,
        with a readable body, to be its entries by verify_document)."""
        for i, (statement, proof) in enumerate(log.batches):
            try:
                valid = await self.zk.verify_proof(statement, proof)
            except ZkError as exc:
                raise Rejected(f"checkpoint {cid}: zk: batch {i}: {exc}") from None
            if not valid:
                raise Rejected(f"checkpoint {cid}: zk: batch {i}'s Groth16 proof does not verify")


@dataclass(frozen=True)
class Finding:
    """One check of a session's closing: ok True (holds), False (fails: `detail` says why) or None (not
    checked here: `detail` says what it needs)."""

    name: str
    ok: bool | None
    detail: str


def commitment(cid: str, state_root: bytes) -> bytes:
    """SessionFactory.checkpointCommitment: keccak256(abi.encode(keccak256(cid bytes), stateRoot))."""
    from eth_utils.crypto import keccak

    return keccak(keccak(bytes(CID.decode(cid))) + state_root)


async def check_closing(
    session_id: str,
    rec: ChainRecord,
    verified_seq: int,
    store: Any,
    arweave: Any | None = None,
) -> list[Finding]:
    """The final anchor and the archived log of an ended session, from the chain, IPFS and Arweave:

    * a session that completed or was terminated has a SessionFinalized; one that expired has none (expiry
      takes no final anchor: its history ends at the last anchored checkpoint) and one still live needs none;
    * the final checkpoint is the newest anchored one, its commitment is what SessionFinalized names, and it
      is the checkpoint that verified (`verified_seq`);
    * the log CID's bytes are on IPFS (the store checks them against the CID) and belong to this session;
    * the Arweave copy (read through `arweave`, an agentgpt.arweave.ArweaveClient, which verifies the
      transaction's signature and data root) holds the same bytes, tagged with this session and chain.
    """
    out: list[Finding] = []
    final = rec.final
    if final is None:
        if rec.ended and rec.end_reason in EXPIRY_REASONS:
            out.append(
                Finding(
                    "final anchor",
                    None,
                    f"the session expired ({EXPIRY_REASONS[rec.end_reason]}): expiry takes no final anchor, "
                    "so its history ends at the last anchored checkpoint",
                )
            )
        elif rec.ended:
            state = "COMPLETED" if rec.ended == COMPLETED else "TERMINATED"
            out.append(
                Finding(
                    "final anchor",
                    False,
                    f"the session is {state} on chain {rec.home_chain_id} but has no final anchor "
                    "(SessionFinalized): its history is not closed on chain",
                )
            )
        else:
            out.append(Finding("final anchor", None, "the session is still live: no final anchor yet"))
        return out
    newest = max(rec.anchors, default=0)
    if final.seq != newest:
        out.append(
            Finding(
                "final anchor", False, f"it names checkpoint {final.seq}, but the newest anchored is {newest}"
            )
        )
        return out
    if final.seq:
        home = [a for a in rec.anchors[final.seq] if a.chain_id == rec.home_chain_id]
        if not home or commitment(home[0].cid, home[0].state_root) != final.checkpoint_hash:
            out.append(
                Finding(
                    "final anchor",
                    False,
                    f"its commitment 0x{final.checkpoint_hash.hex()} is not that of checkpoint {final.seq} "
                    "as anchored on the home chain",
                )
            )
            return out
        if verified_seq != final.seq:
            out.append(
                Finding(
                    "final anchor", False, f"the final checkpoint {final.seq} is not the one that verifies"
                )
            )
            return out
    out.append(Finding("final anchor", True, f"closes the history at task {final.seq}"))
    if not final.log_cid:
        out.append(Finding("event log", False, "the final anchor names no archived event log"))
        return out
    try:
        data = await store.get(final.log_cid)
    except (ContentNotFound, ContentIntegrityError) as exc:
        out.append(Finding("event log", False, f"{final.log_cid} cannot be read from IPFS: {exc}"))
        return out
    try:
        archived = json.loads(data)
        owner_ok = str(archived.get("session_id")) == session_id
    except (ValueError, AttributeError):
        owner_ok = False
    if not owner_ok:
        out.append(
            Finding("event log", False, f"{final.log_cid} is not the event log of session {session_id}")
        )
        return out
    events = len(archived.get("events") or [])
    out.append(Finding("event log", True, f"{final.log_cid}: {events} events, {len(data)} bytes"))
    if not final.arweave_tx:
        out.append(Finding("arweave", False, "the final anchor names no Arweave copy of the event log"))
    elif arweave is None:
        out.append(
            Finding("arweave", None, f"transaction {final.arweave_tx}: pass an Arweave gateway to check it")
        )
    else:
        out.append(await _check_arweave(session_id, rec.home_chain_id, final.arweave_tx, data, arweave))
    return out


async def _check_arweave(session_id: str, chain_id: int, tx_id: str, data: bytes, arweave: Any) -> Finding:
    try:
        tx = await arweave.read(tx_id)
    except Unavailable:
        raise
    except RpcError as exc:  # pragma: no cover - the client raises ServiceErrors
        return Finding("arweave", False, f"transaction {tx_id}: {exc.details}")
    except Exception as exc:
        message = getattr(exc, "message", str(exc))
        return Finding("arweave", False, f"transaction {tx_id} does not verify: {message}")
    if tx.data != data:
        return Finding("arweave", False, f"transaction {tx_id} holds other bytes than the anchored IPFS log")
    tags = tx.tag_map
    if tags.get("Session-Id") != session_id or tags.get("Chain-Id") != str(chain_id):
        return Finding(
            "arweave",
            False,
            f"transaction {tx_id} is tagged Session-Id={tags.get('Session-Id')!r} Chain-Id={tags.get('Chain-Id')!r}",
        )
    return Finding("arweave", True, f"transaction {tx_id}: the same bytes, signed, tagged with this session")

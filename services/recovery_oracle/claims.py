"""Claims and penalties: evidence that an executor lost data or vouched for a state that does not verify,
judged from what the chains record and what IPFS holds, and the penalty applied through ExecutorRegistry.

- **Data loss** (`CLAIM_KIND_DATA_LOSS`, evidence: the checkpoint's CID): a checkpoint the accused executor
  anchored cannot be fetched from IPFS in `attempts` tries spread over `window` seconds, while the IPFS
  node itself answers. Upheld: `burn` of DATA_LOSS_BURN_BPS (5 %) of the executor's bond.
- **False recovery claim** (`CLAIM_KIND_FALSE_RECOVERY_CLAIM`, evidence: the CID of the checkpoint
  document the executor answered with, as `CID` or `seq=N cid=CID` when it is sealed): the document is
  signed by the accused (its task log's signatures check out and name them) and it does not verify against
  the chains (see verify.py). Upheld: `slash` of FALSE_RECOVERY_SLASH_BPS (15 %) of the bond to the
  challenger.

Each claim is idempotent: its evidence text is canonical (kind, home chain, session, seq, CID), the
registry penalises one evidence text once, and a claim already penalised is answered as upheld without a
second transaction. A claim the evidence does not support is answered `upheld=false` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol

from eth_utils.crypto import keccak
from prometheus_client import CollectorRegistry, Counter

from agentgpt.chain.sender import KeySender
from agentgpt.checkpoint_format import verify_document
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import FailedPrecondition, InvalidArgument, Unavailable
from agentgpt.ipfs import CheckpointReader, ContentStore
from agentgpt.ipfs.errors import ContentIntegrityError, ContentNotFound
from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.tasklog import TaskLogError
from agentgpt.verify import Anchor, ChainRecord, CheckpointVerifier, Rejected

log = logging.getLogger("agentgpt.recovery.claims")

_EVIDENCE = re.compile(r"^(?:seq=(?P<seq>\d{1,19})\s+)?(?:cid=)?(?P<cid>b[a-z2-7]{20,120})$")


class PenaltyChain(Protocol):
    async def penalized(self, evidence: str) -> bool: ...
    async def burn(self, executor: str, evidence: str) -> tuple[int, bytes]: ...
    async def slash(self, executor: str, beneficiary: str, evidence: str) -> tuple[int, bytes]: ...


class RegistryPenalties:
    """ExecutorRegistry on the home chain, called with the oracle's key (which holds ORACLE_ROLE)."""

    def __init__(self, sender: KeySender) -> None:
        self.sender = sender
        self.registry = sender.contract("ExecutorRegistry")

    async def penalized(self, evidence: str) -> bool:
        return bool(await self.registry.functions.penalized(keccak(text=evidence)).call())

    async def burn(self, executor: str, evidence: str) -> tuple[int, bytes]:
        bps = int(await self.registry.functions.DATA_LOSS_BURN_BPS().call())
        return bps, await self.sender.transact(self.registry.functions.burn(executor, bps, evidence))

    async def slash(self, executor: str, beneficiary: str, evidence: str) -> tuple[int, bytes]:
        bps = int(await self.registry.functions.FALSE_RECOVERY_SLASH_BPS().call())
        return bps, await self.sender.transact(
            self.registry.functions.slash(executor, bps, beneficiary, evidence)
        )


@dataclass(frozen=True)
class Evidence:
    cid: str
    seq: int | None


def parse_evidence(text: str) -> Evidence:
    m = _EVIDENCE.fullmatch(text.strip())
    if m is None:
        raise InvalidArgument(
            "evidence", "must be a checkpoint CID (base32 CIDv1), or `seq=N cid=CID` for a sealed one"
        )
    return Evidence(m.group("cid"), int(m.group("seq")) if m.group("seq") else None)


class ClaimJudge:
    def __init__(
        self,
        verifier: CheckpointVerifier,
        store: ContentStore,
        reader: CheckpointReader,
        penalties: PenaltyChain | None,
        registry: CollectorRegistry,
        *,
        attempts: int = 3,
        window: float = 30.0,
    ) -> None:
        self.verifier = verifier
        self.store = store
        self.reader = reader
        self.penalties = penalties
        self.attempts = max(1, attempts)
        self.window = window
        self.claims = Counter(
            "agentgpt_recovery_claims",
            "Claims judged by the recovery oracle, by kind and outcome (upheld, refused)",
            ["kind", "outcome"],
            registry=registry,
        )
        for kind in ("data_loss", "false_recovery_claim"):
            for outcome in ("upheld", "refused"):
                self.claims.labels(kind, outcome)

    async def submit(self, req: pb.SubmitClaimRequest) -> pb.SubmitClaimResponse:
        if self.penalties is None:
            raise FailedPrecondition(
                "claims need the home chain's ExecutorRegistry and a key holding its ORACLE_ROLE: set "
                "AGENTGPT_NETWORK and AGENTGPT_ORACLE_KEY (or AGENTGPT_ORACLE_KEY_FILE)"
            )
        evidence = parse_evidence(req.evidence)
        if req.kind == pb.CLAIM_KIND_FALSE_RECOVERY_CLAIM and not req.challenger:
            raise InvalidArgument(
                "challenger", "is required for a false recovery claim (who the slash is paid to)"
            )
        rec = await self.verifier.record(req.session_id)
        kind = "data_loss" if req.kind == pb.CLAIM_KIND_DATA_LOSS else "false_recovery_claim"
        try:
            if req.kind == pb.CLAIM_KIND_DATA_LOSS:
                text, why = await self._data_loss(req, evidence, rec)
            else:
                text, why = await self._false_claim(req, evidence, rec)
        except Rejected as exc:
            self.claims.labels(kind, "refused").inc()
            return pb.SubmitClaimResponse(upheld=False, explanation=str(exc))
        resp = await self._penalise(req, kind, text, why)
        self.claims.labels(kind, "upheld").inc()
        return resp

    # ------------------------------------------------------------------ data loss
    async def _data_loss(self, req: pb.SubmitClaimRequest, ev: Evidence, rec: ChainRecord) -> tuple[str, str]:
        anchors = [a for found in rec.anchors.values() for a in found if a.cid == ev.cid]
        if not anchors:
            raise Rejected(f"{ev.cid} is not an anchored checkpoint of session {req.session_id}")
        responsible = _writer(anchors, rec)
        if responsible.lower() != req.executor.lower():
            raise Rejected(f"checkpoint {ev.cid} was anchored by {responsible}, not {req.executor}")
        seq = anchors[0].seq
        try:
            await self.store.probe()
        except Exception as exc:
            raise Unavailable(
                f"IPFS: the node does not answer, so data loss cannot be judged now: {exc}"
            ) from None
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.window / (self.attempts - 1))
            try:
                await self.store.get(ev.cid)
            except (ContentNotFound, Unavailable) as exc:
                log.info("data-loss claim %s: attempt %d: %s", ev.cid, attempt, exc)
                continue
            except ContentIntegrityError:
                raise Rejected(
                    f"checkpoint {ev.cid}: IPFS answers bytes that do not match the CID; that is a corrupt "
                    "copy, not data loss"
                ) from None
            raise Rejected(f"checkpoint {ev.cid} (seq {seq}) is retrievable from IPFS: no data was lost")
        text = f"data_loss home_chain={rec.home_chain_id} session={req.session_id} seq={seq} cid={ev.cid}"
        return text, (
            f"checkpoint {ev.cid} (seq {seq}), anchored by {responsible}, could not be fetched from IPFS "
            f"in {self.attempts} attempts over {self.window:g} s"
        )

    # ------------------------------------------------------------------ false recovery claim
    async def _false_claim(
        self, req: pb.SubmitClaimRequest, ev: Evidence, rec: ChainRecord
    ) -> tuple[str, str]:
        try:
            doc: Any = await self.reader.read(ev.cid, session_id=req.session_id, seq=ev.seq)
        except InvalidArgument:
            raise InvalidArgument(
                "evidence", f"{ev.cid} is sealed: give it as `seq=N cid={ev.cid}`"
            ) from None
        except (ContentNotFound, ContentIntegrityError) as exc:
            raise Rejected(f"the evidence {ev.cid} cannot be read as a checkpoint: {exc}") from None
        try:
            signed = verify_document(doc)
        except TaskLogError as exc:
            raise Rejected(
                f"{ev.cid}: its signatures do not check out, so it proves nothing about anyone: {exc}"
            ) from None
        if signed.executor.lower() != req.executor.lower():
            raise Rejected(f"checkpoint {ev.cid} is signed by {signed.executor}, not {req.executor}")
        cp = cpb.Checkpoint(
            session_id=req.session_id, seq=int(doc["seq"]), cid=ev.cid, state_root=bytes(doc["state_root"])
        )
        anchored = [a for a in rec.anchors.get(cp.seq, []) if a.cid == cp.cid]
        check = await self.verifier.check(cp, rec)
        if check.verified:
            raise Rejected(f"checkpoint {ev.cid} (seq {cp.seq}) verifies: the state it claims holds")
        reason = (
            check.failure
            if anchored
            else (
                f"checkpoint {ev.cid} (seq {cp.seq}) is not the checkpoint anchored for seq {cp.seq}: {check.failure}"
            )
        )
        text = f"false_recovery_claim home_chain={rec.home_chain_id} session={req.session_id} seq={cp.seq} cid={ev.cid}"
        return text, reason

    # ------------------------------------------------------------------ penalty
    async def _penalise(
        self, req: pb.SubmitClaimRequest, kind: str, evidence: str, why: str
    ) -> pb.SubmitClaimResponse:
        assert self.penalties is not None
        if await self.penalties.penalized(evidence):
            return pb.SubmitClaimResponse(
                upheld=True, explanation=f"{why}; already penalised for this evidence"
            )
        if kind == "data_loss":
            bps, tx = await self.penalties.burn(req.executor, evidence)
            what = f"{bps / 100:g}% of {req.executor}'s bond burned"
        else:
            bps, tx = await self.penalties.slash(req.executor, req.challenger, evidence)
            what = f"{bps / 100:g}% of {req.executor}'s bond slashed to {req.challenger}"
        log.warning("claim upheld: %s: %s (tx 0x%s)", why, what, tx.hex())
        return pb.SubmitClaimResponse(upheld=True, tx_hash=tx, explanation=f"{why}; {what}")


def _writer(anchors: list[Anchor], rec: ChainRecord) -> str:
    home = [a for a in anchors if a.chain_id == rec.home_chain_id]
    return (home or anchors)[0].writer

"""SessionFactory's final anchor: completion and termination close the session's history on chain in the
same transaction (a new final checkpoint signed by the assigned executor, or the last one re-affirmed, and
the archived event log's CID and Arweave transaction id)."""

from __future__ import annotations

from multiformats import CID

from agentgpt.checkpoint_format import Domain, checkpoint_digest, sign
from agentgpt.tasklog import ExecutorKey
from tests.contracts.chain import ZERO32, Chain, reaffirm

CID_3 = bytes(CID.decode("bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"))
CID_5 = bytes(CID.decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"))
LOG = bytes(CID.decode("bafkreidrvhyfxxnu2enshqoiqnvmlp3tnfsyrjxpaiv5rlpw3pxzm5dk7q"))
ARWEAVE = b"\xaa" * 32
ROOT_3, ROOT_5, PREV = b"\x03" * 32, b"\x05" * 32, b"\x03" * 32


def _session_with_checkpoint_3(c: Chain) -> int:
    sid = c.active_session()
    c.tx(c.factory.functions.anchorCheckpoint(sid, 3, CID_3, ROOT_3), c.actors.executor)
    return sid


def _final(c: Chain, sid: int, signer: str, seq: int = 5) -> tuple[object, ...]:
    key = ExecutorKey(c.key_of[signer])
    domain = Domain(c.chain_id, c.factory.address)
    sig = sign(key, checkpoint_digest(domain, str(sid), seq, ROOT_5, PREV))
    return (seq, ROOT_5, PREV, CID_5, sig, LOG, ARWEAVE)


def test_completion_anchors_a_new_final_checkpoint_signed_by_the_executor(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = _session_with_checkpoint_3(c)
    receipt = c.tx(c.factory.functions.complete(sid, _final(c, sid, a.executor)), a.owner)
    (anchored,) = c.events(receipt, c.factory, "CheckpointAnchored")
    assert (anchored["args"]["seq"], anchored["args"]["writer"], anchored["args"]["cid"]) == (
        5,
        a.executor,
        CID_5,
    )
    (final,) = c.events(receipt, c.factory, "SessionFinalized")
    commitment = c.factory.functions.checkpointCommitment(CID_5, ROOT_5).call()
    assert final["args"]["seq"] == 5 and final["args"]["checkpointHash"] == commitment
    assert (final["args"]["logCid"], final["args"]["arweaveTx"]) == (LOG, ARWEAVE)
    assert c.factory.functions.latestCheckpoint(sid).call() == [5, commitment]


def test_a_final_checkpoint_not_signed_by_the_assigned_executor_is_refused(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = _session_with_checkpoint_3(c)
    c.reverts(c.factory.functions.complete(sid, _final(c, sid, a.owner)), a.owner, "NotAssignedExecutor")
    bad = list(_final(c, sid, a.executor))
    bad[1] = b"\x06" * 32  # another state root than the one signed
    c.reverts(c.factory.functions.complete(sid, tuple(bad)), a.owner, "NotAssignedExecutor")
    bad[4] = b"\x01" * 65  # not a signature at all
    c.reverts(c.factory.functions.complete(sid, tuple(bad)), a.owner, "NotAssignedExecutor")
    # the executor reassigned away: its signature no longer closes the session
    c.tx(c.factory.functions.reassignExecutor(sid, a.executor2), a.admin)
    c.reverts(c.factory.functions.complete(sid, _final(c, sid, a.executor)), a.owner, "NotAssignedExecutor")
    c.tx(c.factory.functions.complete(sid, _final(c, sid, a.executor2)), a.owner)


def test_the_final_anchor_cannot_go_back_or_rewrite_the_last_anchor(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = _session_with_checkpoint_3(c)
    c.reverts(
        c.factory.functions.complete(sid, _final(c, sid, a.executor, seq=2)), a.owner, "FinalCheckpointBehind"
    )
    rewritten = (3, ROOT_5, ZERO32, CID_3, b"", LOG, ARWEAVE)  # seq 3 with another state root
    c.reverts(c.factory.functions.complete(sid, rewritten), a.owner, "FinalCheckpointMismatch")
    same = (3, ROOT_3, ZERO32, CID_3, b"", LOG, ARWEAVE)
    receipt = c.tx(c.factory.functions.complete(sid, same), a.owner)
    assert not c.events(receipt, c.factory, "CheckpointAnchored")
    (final,) = c.events(receipt, c.factory, "SessionFinalized")
    assert final["args"]["seq"] == 3


def test_termination_by_the_oracle_reaffirms_the_last_anchor_with_the_log(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = _session_with_checkpoint_3(c)
    receipt = c.tx(c.factory.functions.terminate(sid, reaffirm(c.factory, sid, LOG)), a.admin)
    (final,) = c.events(receipt, c.factory, "SessionFinalized")
    assert (final["args"]["seq"], final["args"]["logCid"]) == (3, LOG)
    assert final["args"]["checkpointHash"] == c.factory.functions.checkpointCommitment(CID_3, ROOT_3).call()

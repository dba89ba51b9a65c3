"""SessionFactory.anchorCheckpointProved: the zk_batch_prover's Groth16 proofs checked on chain by the
verifier the setup exported (scripts/zk_setup.py), on a real anvil, with proofs made by snarkjs."""

from __future__ import annotations

import asyncio
import os

import pytest

from agentgpt.zk import PROVED_MARKER
from agentgpt.zk.batch import Groth16Worker, Proof, Statement, witnesses

from .chain import REVERT_GAS, Chain

FEE = 10**15
CID = b"\x01\x71\x12\x20" + b"\x33" * 32


@pytest.fixture(scope="module")
def proved() -> list[tuple[Statement, Proof]]:
    """Two checkpoints' proofs: tasks 1-3 from root 0, then tasks 4-5 continuing."""
    worker = Groth16Worker()
    why = worker.available()
    assert why is None, f"the zk setup is part of `make setup`: {why}"
    hashes = [os.urandom(32) for _ in range(5)]
    first = witnesses(0, 0, hashes[:3], [FEE] * 3)
    s = first[-1].statement
    second = witnesses(s.new_root, s.spent_after, hashes[3:], [FEE, 2 * FEE])

    async def prove() -> list[tuple[Statement, Proof]]:
        try:
            return [(w.statement, await worker.prove(w)) for w in (*first, *second)]
        finally:
            await worker.close()

    return asyncio.run(prove())


def proved_session(c: Chain) -> int:
    return c.active_session(allowlist=[PROVED_MARKER])


def anchor(c: Chain, sid: int, seq: int, batches: list[tuple[Statement, Proof]]) -> object:
    return c.factory.functions.anchorCheckpointProved(
        sid,
        seq,
        CID,
        b"\x44" * 32,
        [s.public_signals() for s, _ in batches],
        [list(p.words) for _, p in batches],
    )


def test_a_proved_session_anchors_only_with_valid_proofs(
    chain: Chain, proved: list[tuple[Statement, Proof]]
) -> None:
    c, a = chain, chain.actors
    assert c.factory.functions.PROVED_MARKER().call() == PROVED_MARKER[1]  # the one the spec side adds
    sid = proved_session(c)
    c.reverts(c.factory.functions.anchorCheckpoint(sid, 3, CID, b"\x44" * 32), a.executor, "ProofRequired")
    receipt = c.tx(anchor(c, sid, 3, proved[:1]), a.executor)
    (event,) = c.events(receipt, c.factory, "BatchesProved")
    assert event["args"]["root"] == proved[0][0].new_root and event["args"]["spent"] == 3 * FEE
    assert c.factory.functions.batchProofOf(sid).call() == [proved[0][0].new_root, 3 * FEE]
    assert c.factory.functions.latestCheckpoint(sid).call()[0] == 3
    assert 200_000 < receipt["gasUsed"] < 400_000  # one pairing check (bench/zk_prover.py reports it)
    c.tx(anchor(c, sid, 5, proved[1:]), a.executor)
    assert c.factory.functions.batchProofOf(sid).call() == [proved[1][0].new_root, 6 * FEE]


def test_forged_or_mismatched_proofs_are_refused(chain: Chain, proved: list[tuple[Statement, Proof]]) -> None:
    c, a = chain, chain.actors
    sid = proved_session(c)
    (s1, p1), (s2, p2) = proved
    forged = Proof((p1.words[0], p1.words[1], *p2.words[2:]))  # points of another proof
    c.reverts(anchor(c, sid, 3, [(s1, forged)]), a.executor, "InvalidBatchProof")
    lied = Statement(s1.prev_root, s1.new_root, s1.spent_before, s1.spent_after + 1, s1.count)
    c.reverts(anchor(c, sid, 3, [(lied, p1)]), a.executor, "InvalidBatchProof")  # another charge
    c.reverts(anchor(c, sid, 2, [(s2, p2)]), a.executor, "BatchMismatch")  # not from the stored root
    c.reverts(anchor(c, sid, 4, [(s1, p1)]), a.executor, "BatchMismatch")  # proves 3 tasks, anchors 4
    c.reverts(anchor(c, sid, 3, []), a.executor, "BatchMismatch")
    assert c.factory.functions.latestCheckpoint(sid).call()[0] == 0  # nothing was anchored
    c.reverts(anchor(c, sid, 3, [(s1, p1)]), a.stranger, "NotAssignedExecutor")


def test_too_little_gas_for_the_pairing_check_reverts_instead_of_refusing_the_proof(
    chain: Chain, proved: list[tuple[Statement, Proof]]
) -> None:
    c, a = chain, chain.actors
    sid = proved_session(c)
    fn = anchor(c, sid, 3, proved[:1])
    receipt = c.w3.eth.wait_for_transaction_receipt(fn.transact({"from": a.executor, "gas": 200_000}))
    assert receipt["status"] == 0
    trace = c.rpc("debug_traceTransaction", [receipt["transactionHash"].hex(), {"disableStorage": True}])
    # the revert names the cause (not "invalid proof", which is what the verifier says when starved)
    assert trace["returnValue"].removeprefix("0x")[:8] == _selector("OutOfGasForProof(uint256,uint256)")
    receipt = c.w3.eth.wait_for_transaction_receipt(fn.transact({"from": a.executor, "gas": REVERT_GAS}))
    assert receipt["status"] == 1  # with its gas it is anchored


def test_the_plain_path_stays_open_for_sessions_without_the_decorator(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session()
    c.tx(c.factory.functions.anchorCheckpoint(sid, 1, CID, b"\x44" * 32), a.executor)
    assert c.factory.functions.batchProofOf(sid).call() == [0, 0]


def _selector(signature: str) -> str:
    from eth_utils.crypto import keccak

    return keccak(text=signature)[:4].hex()

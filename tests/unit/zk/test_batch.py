"""The zk_batch_prover's pieces against their references: Poseidon against circomlibjs, the statement
against the circuit (snarkjs proves it), Groth16 verification in Python and in snarkjs, and the
checkpoint document's `zk` block as verify_document checks it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from agentgpt.checkpoint_format import Domain, checkpoint_document, entry_digest, sign, verify_document
from agentgpt.tasklog import ExecutorKey, TaskLog, TaskLogError
from agentgpt.zk import PROVED_MARKER, PROVED_SIGNATURE, proves_batches
from agentgpt.zk.batch import (
    BATCH,
    Groth16Worker,
    Proof,
    Statement,
    ZkError,
    chain_root,
    parse_block,
    verify,
    verifying_key,
    witnesses,
    zk_block,
)
from agentgpt.zk.poseidon import FIELD, poseidon16

CIRCUITS = Path(__file__).resolve().parents[3] / "circuits"
KEY = ExecutorKey("0x" + "11" * 32)
DOMAIN = Domain(31337, "0x" + "22" * 20)


def test_poseidon_matches_circomlibjs() -> None:
    cases = [
        list(range(1, 17)),
        [0] * 16,
        [FIELD - 1 - i for i in range(16)],
        [int.from_bytes(os.urandom(31)) for _ in range(16)],
    ]
    script = (
        "import('circomlibjs').then(async ({buildPoseidonReference}) => {"
        " const p = await buildPoseidonReference();"
        f" for (const c of {json.dumps([[str(x) for x in c] for c in cases])})"
        "   console.log(p.F.toString(p(c.map(BigInt))));"
        " process.exit(0); })"
    )
    out = subprocess.run(["node", "-e", script], cwd=CIRCUITS, capture_output=True, text=True, check=True)
    assert [int(x) for x in out.stdout.split()] == [poseidon16(c) for c in cases]
    with pytest.raises(ValueError, match="16 inputs"):
        poseidon16([1, 2])
    with pytest.raises(ValueError, match="field element"):
        poseidon16([FIELD] + [0] * 15)


def test_batches_split_chain_and_charge() -> None:
    hashes = [os.urandom(32) for _ in range(BATCH + 6)]
    fees = list(range(1, len(hashes) + 1))
    ws = witnesses(7, 100, hashes, fees)
    assert [w.statement.count for w in ws] == [BATCH, 6]
    assert ws[0].statement.prev_root == 7 and ws[1].statement.prev_root == ws[0].statement.new_root
    assert ws[-1].statement.spent_after == 100 + sum(fees)
    # the root commits to every record, its fee and the count
    assert chain_root(7, ws[0].records, ws[0].fees) == ws[0].statement.new_root
    assert chain_root(7, ws[0].records, (*ws[0].fees[:-1], ws[0].fees[-1] + 1)) != ws[0].statement.new_root
    assert chain_root(7, ws[0].records[:-1], ws[0].fees[:-1]) != ws[0].statement.new_root
    with pytest.raises(ZkError, match="negative"):
        witnesses(0, 0, hashes[:1], [-1])
    with pytest.raises(ZkError, match=r"1\.\.44 records"):
        chain_root(0, [], [])
    assert PROVED_MARKER == ("0x" + "00" * 20, keccak(text=PROVED_SIGNATURE)[:4])
    assert proves_batches(["ofac_filter", "zk_batch_prover"]) and not proves_batches("zk_batch_prover")


@pytest.fixture(scope="module")
def proved() -> Iterator[tuple[Statement, Proof, Groth16Worker]]:
    worker = Groth16Worker()
    assert worker.available() is None, f"the zk setup is part of `make setup`: {worker.available()}"
    (w,) = witnesses(0, 0, [os.urandom(32) for _ in range(3)], [5, 6, 7])
    loop = asyncio.new_event_loop()
    try:
        proof = loop.run_until_complete(worker.prove(w))
        yield w.statement, proof, worker
        loop.run_until_complete(worker.close())
    finally:
        loop.close()


def test_groth16_verifies_in_python_and_in_snarkjs(proved: tuple[Statement, Proof, Groth16Worker]) -> None:
    statement, proof, _ = proved
    vk = verifying_key()
    assert verify(vk, statement, proof)
    other = Statement(statement.prev_root, statement.new_root, 0, statement.spent_after + 1, statement.count)
    assert not verify(vk, other, proof)  # another charge
    swapped = Proof((*proof.words[:6], proof.words[7], proof.words[6]))  # C not on the curve
    assert not verify(vk, statement, swapped)

    async def with_snarkjs() -> tuple[bool, bool]:
        worker = Groth16Worker()
        try:
            return await worker.verify_proof(statement, proof), await worker.verify_proof(other, proof)
        finally:
            await worker.close()

    assert asyncio.run(with_snarkjs()) == (True, False)


def _document(zk: object | None, n: int = 3) -> dict[str, object]:
    log = TaskLog(
        "9", KEY, b"\x00" * 32, 0, sign_entry=lambda s, h: sign(KEY, entry_digest(DOMAIN, "9", s, h))
    )
    for seq in range(1, n + 1):
        log.append(seq, "note", "succeeded", {"outputs": [seq]}, context_epoch=1)
    entries = list(log.pending)
    block = zk(entries) if callable(zk) else zk
    return checkpoint_document(
        domain=DOMAIN,
        session_id="9",
        seq=n,
        epoch=1,
        prev_cid="",
        prev_seq=0,
        prev_root=b"\x00" * 32,
        log_start=b"\x00" * 32,
        entries=entries,
        results=dict(log.results),
        key=KEY,
        context=[],
        budget={"budget": "0", "spent": "0"},
        memory={},
        chains=["home"],
        zk=block,  # type: ignore[arg-type]
    )


def test_the_zk_block_is_checked_against_the_documents_entries(
    proved: tuple[Statement, Proof, Groth16Worker],
) -> None:
    _, proof, _ = proved

    def block(fees: list[int], *, shift: int = 0):  # type: ignore[no-untyped-def]
        def make(entries):  # type: ignore[no-untyped-def]
            ws = witnesses(shift, 0, [e.hash for e in entries], fees)
            return zk_block([(w.statement, proof) for w in ws], fees)

        return make

    ok = verify_document(_document(block([1, 2, 3])))
    assert len(ok.batches) == 1 and ok.batches[0][0].spent_after == 6
    assert verify_document(_document(None)).batches == ()
    doc = _document(block([1, 2, 3]))
    doc["zk"] = {**doc["zk"], "fees": ["1", "2", "4"]}  # type: ignore[dict-item]
    with pytest.raises(TaskLogError, match="zk: the fees"):
        verify_document(doc)
    doc = _document(block([1, 2, 3]))
    other_records = zk_block(
        [(w.statement, proof) for w in witnesses(0, 0, [os.urandom(32)] * 3, [1, 2, 3])], [1, 2, 3]
    )
    doc["zk"] = other_records
    with pytest.raises(TaskLogError, match="do not match the checkpoint's entries"):
        verify_document(doc)
    with pytest.raises(TaskLogError, match="cover 2 tasks"):
        verify_document(_document(lambda entries: block([1, 2])(entries[:2]), n=3))
    for bad in (
        {},
        {"batches": [], "fees": []},
        {"batches": [{"public": ["1"], "proof": []}], "fees": []},
        {"batches": [{"public": ["01", "0", "0", "0", "1"], "proof": ["0"] * 8}], "fees": ["0"]},
    ):
        doc = _document(None)
        doc["zk"] = bad
        with pytest.raises(TaskLogError, match="zk: "):
            verify_document(doc)
    with pytest.raises(ZkError, match="out of range"):
        parse_block(
            {"batches": [{"public": [str(FIELD), "0", "0", "0", "1"], "proof": ["0"] * 8}], "fees": []}
        )

"""The zk_batch_prover's statement, its roots, its Groth16 proofs: built, proved, checked.

A session that attaches `zk_batch_prover` keeps a second commitment to its task log next to the
keccak hash chain (docs/checkpoint-format.md): a Poseidon chain that a SNARK can speak about. Each
checkpoint carries one proof per batch of at most BATCH tasks (circuits/batch_chain.circom):

    records  = [field(entry hash) of each task of the batch]      (keccak256 mod the BN254 field)
    fees     = [AGPT base units each task was charged]
    elements = [count, rec_1, fee_1, ..., rec_n, fee_n, 0, ...]    (padded to 2 BATCH + 1, then to 15s)
    root     = sponge of Poseidon(16) from prev_root over elements 15 at a time
    public   = (prev_root, new_root, spent_before, spent_after, count), spent_after = spent_before + sum(fees)

The first batch of a session starts from root 0 and spent 0. The home chain's SessionFactory checks
every proof with the verifier exported for this circuit's key and keeps the session's latest root and
proved spend (`batchProofOf`), so a checkpoint with a forged or mismatched proof cannot be anchored and
what was charged stays within the escrow; `agentgpt verify` and the recovery oracle check the proofs
again here (pairings with py_ecc) and, where they can read the body, that the records are its entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentgpt.contracts import Artifact
from agentgpt.zk.poseidon import FIELD, WIDTH, poseidon16

#: Tasks per proof: the circuit's N (3,822 constraints, so the powers of tau stay at 2^12).
BATCH = 44
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".agentgpt" / "zk"
_CHUNK = WIDTH - 1
_ELEMENTS = 1 + 2 * BATCH
_PADDED = -(-_ELEMENTS // _CHUNK) * _CHUNK


class ZkError(ValueError):
    """A batch proof or its statement is malformed, does not verify, or does not match the checkpoint."""


def record_of(entry_hash: bytes) -> int:
    """A task-log entry hash as a field element (keccak256 reduced modulo the BN254 scalar field)."""
    if len(entry_hash) != 32:
        raise ZkError("an entry hash is 32 bytes")
    return int.from_bytes(entry_hash, "big") % FIELD


def chain_root(prev_root: int, records: Sequence[int], fees: Sequence[int]) -> int:
    """The root after one batch (1..BATCH records with their fees) from `prev_root`."""
    if not 1 <= len(records) <= BATCH or len(fees) != len(records):
        raise ZkError(f"a batch has 1..{BATCH} records, each with a fee")
    elements = [len(records)]
    for r, f in zip(records, fees, strict=True):
        if not (0 <= r < FIELD and 0 <= f < FIELD):
            raise ZkError("a record or fee is not a field element")
        elements += [r, f]
    elements += [0] * (_PADDED - len(elements))
    state = prev_root
    for k in range(0, _PADDED, _CHUNK):
        state = poseidon16([state, *elements[k : k + _CHUNK]])
    return state


@dataclass(frozen=True)
class Statement:
    """What one proof says, as the verifier's public signals."""

    prev_root: int
    new_root: int
    spent_before: int
    spent_after: int
    count: int

    def public_signals(self) -> list[int]:
        return [self.prev_root, self.new_root, self.spent_before, self.spent_after, self.count]

    @classmethod
    def from_signals(cls, signals: Sequence[Any]) -> Statement:
        values = [_field(v, "a public signal") for v in signals]
        if len(values) != 5:
            raise ZkError("a batch statement has 5 public signals")
        return cls(*values)


@dataclass(frozen=True)
class Witness:
    statement: Statement
    records: tuple[int, ...]
    fees: tuple[int, ...]

    def circuit_input(self) -> dict[str, Any]:
        pad = BATCH - len(self.records)
        s = self.statement
        return {
            "prevRoot": str(s.prev_root),
            "newRoot": str(s.new_root),
            "spentBefore": str(s.spent_before),
            "spentAfter": str(s.spent_after),
            "count": str(s.count),
            "records": [str(r) for r in self.records] + ["0"] * pad,
            "fees": [str(f) for f in self.fees] + ["0"] * pad,
        }


def witnesses(
    prev_root: int, spent_before: int, entry_hashes: Sequence[bytes], fees: Sequence[int]
) -> list[Witness]:
    """The batches covering `entry_hashes` (in task order) with their `fees`, from (prev_root, spent_before)."""
    if len(fees) != len(entry_hashes):
        raise ZkError("every task needs its fee")
    out: list[Witness] = []
    root, spent = prev_root, spent_before
    for k in range(0, len(entry_hashes), BATCH):
        recs = tuple(record_of(h) for h in entry_hashes[k : k + BATCH])
        batch_fees = tuple(int(f) for f in fees[k : k + BATCH])
        if any(f < 0 for f in batch_fees):
            raise ZkError("a fee is negative")
        new_root = chain_root(root, recs, batch_fees)
        after = spent + sum(batch_fees)
        out.append(Witness(Statement(root, new_root, spent, after, len(recs)), recs, batch_fees))
        root, spent = new_root, after
    return out


@dataclass(frozen=True)
class Proof:
    """A Groth16 proof as the Solidity verifier takes it: (a, b, c), b's coordinates in its (swapped) order."""

    words: tuple[int, ...]  # a.x, a.y, b.x.c1, b.x.c0, b.y.c1, b.y.c0, c.x, c.y

    @classmethod
    def from_snarkjs(cls, proof: Mapping[str, Any]) -> Proof:
        a, b, c = proof["pi_a"], proof["pi_b"], proof["pi_c"]
        words = (a[0], a[1], b[0][1], b[0][0], b[1][1], b[1][0], c[0], c[1])
        return cls(tuple(int(w) for w in words))

    @classmethod
    def from_words(cls, words: Sequence[Any]) -> Proof:
        values = tuple(_field(w, "a proof word", modulus=_Q) for w in words)
        if len(values) != 8:
            raise ZkError("a Groth16 proof is 8 words")
        return cls(values)

    def to_json(self) -> list[str]:
        return [str(w) for w in self.words]


# --------------------------------------------------------------------------- the document's zk block
def zk_block(batches: Sequence[tuple[Statement, Proof]], fees: Sequence[int]) -> dict[str, Any]:
    """The checkpoint header's `zk` value: each batch's public signals and proof, and the tasks' fees."""
    return {
        "batches": [
            {"public": [str(v) for v in s.public_signals()], "proof": p.to_json()} for s, p in batches
        ],
        "fees": [str(f) for f in fees],
    }


def parse_block(block: Any) -> tuple[list[tuple[Statement, Proof]], list[int]]:
    if not isinstance(block, Mapping) or set(block) != {"batches", "fees"}:
        raise ZkError("the zk block is a map of exactly `batches` and `fees`")
    batches_raw, fees_raw = block["batches"], block["fees"]
    if not isinstance(batches_raw, list) or not batches_raw or not isinstance(fees_raw, list):
        raise ZkError("the zk block needs at least one batch and a list of fees")
    batches = []
    for b in batches_raw:
        if not isinstance(b, Mapping) or set(b) != {"public", "proof"}:
            raise ZkError("a batch is a map of exactly `public` and `proof`")
        if not isinstance(b["public"], list) or not isinstance(b["proof"], list):
            raise ZkError("a batch's `public` and `proof` are lists")
        batches.append((Statement.from_signals(b["public"]), Proof.from_words(b["proof"])))
    fees = [_field(f, "a fee", modulus=2**96) for f in fees_raw]
    return batches, fees


def check_chain(
    batches: Sequence[tuple[Statement, Proof]],
    *,
    prev_root: int,
    spent_before: int,
    tasks: int,
    entry_hashes: Sequence[bytes] | None = None,
    fees: Sequence[int] | None = None,
) -> Statement:
    """Check that the batches link (prev_root, spent_before) onward over `tasks` tasks (and, given the
    entries and fees, that they are exactly those records); the last statement. Proofs: `verify`."""
    root, spent, covered = prev_root, spent_before, 0
    for s, _ in batches:
        if s.prev_root != root or s.spent_before != spent:
            raise ZkError("a batch does not start where the previous one ended (root or spend)")
        if not 1 <= s.count <= BATCH or s.spent_after < s.spent_before:
            raise ZkError("a batch's count or spend is out of range")
        root, spent, covered = s.new_root, s.spent_after, covered + s.count
    if covered != tasks:
        raise ZkError(f"the batches cover {covered} tasks, the checkpoint {tasks}")
    if entry_hashes is not None and fees is not None:
        expected = witnesses(prev_root, spent_before, entry_hashes, fees)
        if [w.statement for w in expected] != [s for s, _ in batches]:
            raise ZkError("the batch statements do not match the checkpoint's entries and fees")
    return batches[-1][0]


# --------------------------------------------------------------------------- Groth16 verification
_Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583  # base field


def _field(value: Any, what: str, *, modulus: int = FIELD) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ZkError(f"{what} must be a decimal number")
    try:
        n = int(value)
    except ValueError:
        raise ZkError(f"{what} must be a decimal number") from None
    if isinstance(value, str) and (not value.isascii() or not value.isdigit() or value != str(n)):
        raise ZkError(f"{what} must be a decimal number without sign or leading zeros")
    if not 0 <= n < modulus:
        raise ZkError(f"{what} is out of range")
    return n


@dataclass(frozen=True)
class VerifyingKey:
    alpha: Any
    beta: Any
    gamma: Any
    delta: Any
    ic: tuple[Any, ...]

    @classmethod
    def from_json(cls, vk: Mapping[str, Any]) -> VerifyingKey:
        from py_ecc.fields import optimized_bn128_FQ as FQ
        from py_ecc.fields import optimized_bn128_FQ2 as FQ2

        def g1(p: Sequence[str]) -> Any:
            return (FQ(int(p[0])), FQ(int(p[1])), FQ(int(p[2])))

        def g2(p: Sequence[Sequence[str]]) -> Any:
            return tuple(FQ2([int(c[0]), int(c[1])]) for c in p)

        if vk.get("protocol") != "groth16" or vk.get("curve") != "bn128" or int(vk.get("nPublic", -1)) != 5:
            raise ZkError("not a Groth16 bn128 verification key with 5 public signals")
        return cls(
            g1(vk["vk_alpha_1"]),
            g2(vk["vk_beta_2"]),
            g2(vk["vk_gamma_2"]),
            g2(vk["vk_delta_2"]),
            tuple(g1(p) for p in vk["IC"]),
        )


def verify(vk: VerifyingKey, statement: Statement, proof: Proof) -> bool:
    """Groth16: e(A, B) = e(alpha, beta) e(L, gamma) e(C, delta), L = IC_0 + sum s_i IC_i. False for a
    proof that does not verify, or whose points are not on the curve or not in the subgroup."""
    from py_ecc.fields import optimized_bn128_FQ as FQ
    from py_ecc.fields import optimized_bn128_FQ2 as FQ2
    from py_ecc.fields import optimized_bn128_FQ12 as FQ12
    from py_ecc.optimized_bn128.optimized_curve import (
        add,
        b,
        b2,
        curve_order,
        is_inf,
        is_on_curve,
        multiply,
        neg,
    )
    from py_ecc.optimized_bn128.optimized_pairing import final_exponentiate, pairing

    w = proof.words
    a = (FQ(w[0]), FQ(w[1]), FQ(1))
    bb = (FQ2([w[3], w[2]]), FQ2([w[5], w[4]]), FQ2([1, 0]))
    c = (FQ(w[6]), FQ(w[7]), FQ(1))
    if not (is_on_curve(a, b) and is_on_curve(c, b) and is_on_curve(bb, b2)):
        return False
    if not is_inf(multiply(bb, curve_order)):
        return False
    signals = statement.public_signals()
    acc = vk.ic[0]
    for s, point in zip(signals, vk.ic[1:], strict=True):
        acc = add(acc, multiply(point, s))
    f = FQ12.one()
    for q, p in ((bb, neg(a)), (vk.beta, vk.alpha), (vk.gamma, acc), (vk.delta, c)):
        f = f * pairing(q, p, final_exponentiate=False)
    return bool(final_exponentiate(f) == FQ12.one())


# --------------------------------------------------------------------------- the setup and the prover
def setup_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Where the setup is: `path`, else $AGENTGPT_ZK_DIR, else .agentgpt/zk (scripts/zk_setup.py)."""
    return Path(path or os.environ.get("AGENTGPT_ZK_DIR") or DEFAULT_DIR)


@lru_cache(maxsize=8)
def _load_vk(path: str) -> VerifyingKey:
    return VerifyingKey.from_json(json.loads(Path(path).read_text()))


def verifying_key(directory: str | os.PathLike[str] | None = None) -> VerifyingKey:
    path = setup_dir(directory) / "verification_key.json"
    if not path.is_file():
        raise ZkError(f"no zk setup at {path.parent} (make setup runs scripts/zk_setup.py)")
    return _load_vk(str(path.resolve()))


def verifier_artifact(directory: str | os.PathLike[str] | None = None) -> Artifact | None:
    """The setup's compiled BatchVerifier (None without a setup): deployed with the contracts."""
    path = setup_dir(directory) / "BatchVerifier.json"
    if not path.is_file():
        return None
    return Artifact.from_json(json.loads(path.read_text()))


WORKER_SCRIPT = Path(__file__).resolve().parents[2] / "circuits" / "groth16.cjs"


def snarkjs_proof(proof: Proof) -> dict[str, Any]:
    w = [str(x) for x in proof.words]
    return {
        "pi_a": [w[0], w[1], "1"],
        "pi_b": [[w[3], w[2]], [w[5], w[4]], ["1", "0"]],
        "pi_c": [w[6], w[7], "1"],
        "protocol": "groth16",
        "curve": "bn128",
    }


class Groth16Worker:
    """snarkjs's Groth16 prover and verifier in one long-lived Node process (circuits/groth16.cjs), one
    request at a time: Node and the curve start once (~1 s), then a 44-task proof takes about a second
    and a verification tens of milliseconds. Where Node or the setup is missing, `available` says why;
    `verify_proof` then falls back to the pure-Python pairing check (`verify`, seconds)."""

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, *, script: Path = WORKER_SCRIPT
    ) -> None:
        self.dir = setup_dir(directory)
        self.script = script
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self.last_ms = 0.0

    def available(self, *, proving: bool = True) -> str | None:
        """None when this machine can prove (or, proving=False, verify with snarkjs); else why not."""
        if shutil.which("node") is None:
            return "node is not on PATH"
        if not self.script.is_file() or not (self.script.parent / "node_modules" / "snarkjs").is_dir():
            return f"the snarkjs worker is not installed ({self.script.parent}; make setup installs it)"
        for name in ("batch_chain.wasm", "batch_chain.zkey") if proving else ("verification_key.json",):
            if not (self.dir / name).is_file():
                return f"no zk setup at {self.dir} (make setup runs scripts/zk_setup.py)"
        return None

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                self._proc = await asyncio.create_subprocess_exec(
                    "node",
                    str(self.script),
                    str(self.dir.resolve()),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=str(self.script.parent),
                    limit=1 << 22,
                )
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            start = time.perf_counter()
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            await proc.stdin.drain()
            line = await proc.stdout.readline()
            self.last_ms = (time.perf_counter() - start) * 1000
        if not line:
            raise ZkError("the snarkjs worker exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise ZkError(f"snarkjs: {answer['error']}")
        return answer

    async def prove(self, witness: Witness) -> Proof:
        why = self.available()
        if why is not None:
            raise ZkError(f"cannot prove here: {why}")
        answer = await self._ask({"prove": witness.circuit_input()})
        if [int(x) for x in answer["publicSignals"]] != witness.statement.public_signals():
            raise ZkError("the prover's public signals differ from the statement")
        return Proof.from_snarkjs(answer["proof"])

    async def verify_proof(self, statement: Statement, proof: Proof) -> bool:
        """Whether `proof` proves `statement` under this setup's verification key."""
        if self.available(proving=False) is not None:
            return await asyncio.to_thread(verify, verifying_key(self.dir), statement, proof)
        signals = [str(v) for v in statement.public_signals()]
        answer = await self._ask({"verify": {"publicSignals": signals, "proof": snarkjs_proof(proof)}})
        return bool(answer["valid"])

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

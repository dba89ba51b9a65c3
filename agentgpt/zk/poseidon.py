"""Poseidon over the BN254 scalar field exactly as circomlib computes it (circomlibjs's reference
implementation), for the 16-input width the batch circuit uses (t = 17).

Only what the batch chain needs: `poseidon16(inputs)` with 16 field elements. The round constants and
the MDS matrix are circomlibjs's (`poseidon_t17.json`, written by `scripts/zk_setup.py --constants`);
tests check the results against circomlibjs itself. About 5 ms per permutation in CPython.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

#: The BN254 (alt_bn128) scalar field: what circom signals and Groth16 public inputs live in.
FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617
WIDTH = 16  # inputs per permutation (t = 17)
ROUNDS_F = 8
ROUNDS_P = 68  # circomlib's partial rounds for t = 17


@lru_cache(maxsize=1)
def _constants() -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    data = json.loads(resources.files("agentgpt.zk").joinpath("poseidon_t17.json").read_text())
    c = tuple(int(x, 16) for x in data["C"])
    m = tuple(tuple(int(x, 16) for x in row) for row in data["M"])
    return c, m


def poseidon16(inputs: Sequence[int]) -> int:
    """circomlib's Poseidon(16) of `inputs` (16 field elements, each < FIELD)."""
    if len(inputs) != WIDTH:
        raise ValueError(f"poseidon16 takes {WIDTH} inputs, not {len(inputs)}")
    if any(not 0 <= x < FIELD for x in inputs):
        raise ValueError("a Poseidon input is not a field element")
    c, m = _constants()
    p = FIELD
    t = WIDTH + 1
    state = [0, *inputs]
    for r in range(ROUNDS_F + ROUNDS_P):
        state = [(a + c[r * t + i]) % p for i, a in enumerate(state)]
        if r < ROUNDS_F // 2 or r >= ROUNDS_F // 2 + ROUNDS_P:
            state = [pow(a, 5, p) for a in state]
        else:
            state[0] = pow(state[0], 5, p)
        state = [sum(mij * a for mij, a in zip(row, state, strict=True)) % p for row in m]
    return state[0]

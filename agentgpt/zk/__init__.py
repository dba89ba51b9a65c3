"""Zero-knowledge batch proofs of a session's task log: the `zk_batch_prover` decorator (batch.py;
docs/zk-batch-prover.md)."""

from __future__ import annotations

from eth_utils.crypto import keccak

DECORATOR = "zk_batch_prover"
#: The allowlist entry that marks a session's anchoring as proved: the owner's activation signature commits
#: it with the rest of the allowlist, and SessionFactory.anchorCheckpoint refuses such a session (only
#: anchorCheckpointProved anchors it). Target 0 is never a call target, so the entry allows no call.
PROVED_SIGNATURE = "anchorCheckpointProved(uint256,uint64,bytes,bytes32,uint256[5][],uint256[8][])"
PROVED_SELECTOR = keccak(text=PROVED_SIGNATURE)[:4]
PROVED_MARKER = ("0x" + "00" * 20, PROVED_SELECTOR)


def proves_batches(decorators: object) -> bool:
    """Whether a spec's decorators ask for proved checkpoints."""
    return isinstance(decorators, (list, tuple)) and DECORATOR in decorators

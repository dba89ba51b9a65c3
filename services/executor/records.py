"""Task records as the session service keeps them: statuses, the canonical result JSON, intents, checkpoints.

The one vocabulary the session runner (writing records) and the resume state (reading them back) share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentgpt.canonical import sorted_json
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.timestamps import set_timestamp
from services.executor.anchoring import Anchor
from services.executor.transactions import TxIntentRecord

RUNNING, SUCCEEDED, FAILED, REFUSED = (
    ss.TASK_STATUS_RUNNING,
    ss.TASK_STATUS_SUCCEEDED,
    ss.TASK_STATUS_FAILED,
    ss.TASK_STATUS_REFUSED,
)
#: Final statuses: a task with one of them is committed and never runs again.
DONE: frozenset[int] = frozenset({SUCCEEDED, FAILED, REFUSED})
#: A final status as the task log names it.
STATUS_NAME: dict[int, str] = {SUCCEEDED: "succeeded", FAILED: "failed", REFUSED: "refused"}


def result_json(result: Mapping[str, Any]) -> str:
    """A task result as reported and logged: canonical JSON (sorted keys; other types as strings)."""
    return sorted_json(result, default=str)


def intent_from_pb(i: ss.TxIntent) -> TxIntentRecord:
    return TxIntentRecord(i.chain_id, i.nonce, bytes(i.tx_hash), bytes(i.raw_tx))


def intent_to_pb(i: TxIntentRecord) -> ss.TxIntent:
    return ss.TxIntent(chain_id=i.chain_id, nonce=i.nonce, tx_hash=i.tx_hash, raw_tx=i.raw_tx)


def checkpoint_pb(
    session_id: str, seq: int, cid: str, root: bytes, anchors: Sequence[Anchor], created_at: float
) -> cpb.Checkpoint:
    cp = cpb.Checkpoint(
        session_id=session_id,
        seq=seq,
        cid=cid,
        state_root=root,
        anchors=[
            cpb.BlockRef(chain_id=a.chain_id, number=a.block_number, hash=a.block_hash) for a in anchors
        ],
    )
    set_timestamp(cp.created_at, created_at)
    return cp

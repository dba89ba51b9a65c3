"""SessionRecord values for unit tests (what a SessionDB row holds)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.session.model import ZERO_HASH, SessionRecord

SPEC_JSON = (
    '{"chains":["arbitrum"],"checkpoint_interval":50,"decorators":["kyc_tier4"],'
    '"models":{"risk":"gpt-4"},"params":{"rebalance":0.3},"type":"treasury_management"}'
)


def session_record(**over: Any) -> SessionRecord:
    base = SessionRecord(
        pk=1,
        session_id="7",
        owner="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        state=1,
        state_reason="created by owner; NFT minted",
        terminal_reason=None,
        type="treasury_management",
        spec_json=SPEC_JSON,
        workflow_hash=b"\x11" * 32,
        budget=str(2**200),
        budget_spent="10",
        home_chain_id=31337,
        mint_tx_hash=b"\x22" * 32,
        executor="",
        lease_executor="",
        lease_epoch=0,
        lease_expires_at=None,
        version=3,
        created_at=1_700_000_000.25,
        updated_at=1_700_000_001.5,
        entered_at=1_700_000_000,
        active_used=0,
        deadline=1_700_003_600,
        context_epoch=0,
        checkpoint_json=None,
        next_task_seq=1,
        event_cursor=1,
        event_head=ZERO_HASH,
        gas_used=0,
        gas_cost_wei="0",
        log_cid=None,
        final_tx_hash=None,
    )
    return replace(base, **over)

from __future__ import annotations

import json

from agentgpt.common.v1 import common_pb2
from agentgpt.session.v1 import session_pb2
from apps.cli.dashboard import render


def test_dashboard_shows_what_the_seed_shows() -> None:
    s = session_pb2.Session(
        session_id="7",
        owner="0x" + "ab" * 20,
        state=common_pb2.SESSION_STATE_ACTIVE,
        budget=str(100 * 10**18),
        budget_spent=str(125 * 10**17),
        executor="0x" + "cd" * 20,
        lease_epoch=3,
        spec=session_pb2.SessionSpec(type="treasury_management", chains=["arbitrum", "polygon"]),
    )
    s.deadline.FromSeconds(1_000_000 + 3600)
    s.latest_checkpoint.CopyFrom(
        common_pb2.Checkpoint(
            session_id="7", seq=50, cid="bafyabc", anchors=[common_pb2.BlockRef(chain_id=31337)]
        )
    )
    resp = session_pb2.InspectSessionResponse(
        session=s,
        tasks_done=142,
        tasks_total=209,
        gas_used=1_234_567,
        gas_cost_wei=str(28 * 10**17),
        completion=142 / 209,
        alerts_critical=0,
        model_score=0.93,
        decorators=["kyc_tier4", "ofac_filter", "gas_optimizer_v3"],
    )
    text = render(resp, now=1_000_000)
    assert text.splitlines()[0].startswith("SESSION 7 [ACTIVE]")
    assert "│ Tasks " in text and "142/209" in text
    assert "12.5 / 100" in text  # AGPT spent / budget
    assert "2.8 ETH (1,234,567 gas)" in text
    assert "68%" in text and "0.93" in text and "0 Critical" in text
    assert "Attached Decorators: [KYC_TIER4, OFAC_FILTER, GAS_OPTIMIZER_V3]" in text
    assert "Chains: arbitrum (home), polygon" in text
    assert "(in 1h 00m)" in text
    assert "Latest checkpoint: seq 50  bafyabc  anchored on: 31337" in text


def test_dashboard_lists_the_alerts_with_their_reasons() -> None:
    resp = session_pb2.InspectSessionResponse(
        session=session_pb2.Session(session_id="8", spec=session_pb2.SessionSpec(type="t")),
        alerts_critical=1,
        alerts_warning=1,
        alerts=[
            session_pb2.Alert(
                severity="critical", code="budget_mismatch", message="budget mismatch: escrow 5"
            ),
            session_pb2.Alert(
                severity="warning", code="task_retrying", message="task 3 retrying", task_seq=3
            ),
        ],
    )
    lines = render(resp, now=0).splitlines()
    at = lines.index("Alerts:")
    assert lines[at + 1].split() == ["CRITICAL", "budget_mismatch", "budget", "mismatch:", "escrow", "5"]
    assert lines[at + 2].split()[:2] == ["WARNING", "task_retrying"]
    quiet = session_pb2.InspectSessionResponse(session=resp.session)
    assert "Alerts:" not in render(quiet, now=0)


def test_dashboard_shows_the_accounts_action_policies() -> None:
    token = "0x" + "12" * 20
    allow = [
        {"target": token, "selector": "0xa9059cbb",
         "policy": {"recipient_arg": 0, "recipients": ["self", "0x" + "34" * 20], "amount_arg": 1,
                    "max_per_call": "1000", "period": 86400, "max_per_period": "5000", "max_calls": 9}},
        {"target": token, "selector": "0x095ea7b3"},
    ]  # fmt: skip
    spec = session_pb2.SessionSpec(type="t", params_json=json.dumps({"allowlist": allow}))
    text = render(session_pb2.InspectSessionResponse(session=session_pb2.Session(session_id="9", spec=spec)))
    assert "Action policies:" in text
    assert (
        f"  {token} 0xa9059cbb: recipient (word 0) in [self, 0x{'34' * 20}]; ≤ 1000 per call (word 1); "
        "≤ 5000 per 86400 s (word 1); ≤ 9 calls"
    ) in text
    assert "0x095ea7b3" not in text  # allowlisted without a policy: nothing to show

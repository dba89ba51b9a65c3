"""compliance_tier2 (agentgpt.decorators.BUNDLES = kyc_tier2 + ofac_filter) in a running engine leasing
from a real gRPC session API: an under-tier owner and a sanctioned address are both refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

from eth_account import Account

from agentgpt.kyc import sign_attestation
from agentgpt.session.v1 import session_pb2 as ss
from tests.component.executor.fake_session import FakeSessionServer
from tests.component.executor.helpers import running_engine
from tests.support import eventually

ISSUER_KEY = "0x" + "44" * 32
ISSUER = Account.from_key(ISSUER_KEY).address
OWNER = Account.from_key("0x" + "55" * 32).address
SANCTIONED = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"  # on the shipped list
CLEAN = "0x" + "ab" * 20


def spec(tier: int) -> ss.SessionSpec:
    att = sign_attestation(ISSUER_KEY, OWNER, tier, int(time.time()) + 3600)
    return ss.SessionSpec(
        type="t", decorators=["compliance_tier2"], params_json=json.dumps({"kyc_attestation": att})
    )


async def test_compliance_tier2_refuses_an_under_tier_owner_and_a_sanctioned_address(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    svc.add_session("201", spec=spec(1), owner=OWNER)  # KYC tier 1 < 2
    svc.add_session("202", spec=spec(3), owner=OWNER)  # KYC tier 3 >= 2
    svc.submit("201", [("transfer", {"chain": "home", "to": CLEAN, "value": 1})])
    svc.submit(
        "202",
        [
            ("transfer", {"chain": "home", "to": SANCTIONED, "value": 1}),
            ("transfer", {"chain": "home", "to": CLEAN, "value": 1}),
        ],
    )
    async with running_engine(fake_session.address, tmp_path, kyc_issuers=(ISSUER,)):
        await eventually(lambda: len(svc.done("201")) == 1 and len(svc.done("202")) == 2, what="3 tasks done")
    under, sanctioned = svc.sessions["201"].tasks[1], svc.sessions["202"].tasks[1]
    assert under.status == ss.TASK_STATUS_REFUSED
    assert "compliance_tier2/kyc_tier2" in under.error and "requires tier 2" in under.error
    assert sanctioned.status == ss.TASK_STATUS_REFUSED
    assert "compliance_tier2/ofac_filter" in sanctioned.error and "sanctions list" in sanctioned.error
    clean = svc.sessions["202"].tasks[2]  # past the bundle: whatever else happens, not refused by it
    assert "compliance_tier2" not in clean.error, clean.error

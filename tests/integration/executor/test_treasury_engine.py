"""The seed's treasury workflow through the engine on real parts: a real Uniswap V2 pool on anvil, the
seed's three decorators, the report on a real IPFS node, anchors on both chains."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from fractions import Fraction

import pytest
from eth_account import Account
from eth_utils import keccak

from agentgpt.filing import NAMESPACE, NOT_SUBMITTED, round_half_up
from agentgpt.ipfs import KuboStore
from agentgpt.kyc import sign_attestation
from agentgpt.session.v1 import session_pb2 as ss
from apps.demo.uniswap import deploy_uniswap, read_market, token_balance
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.executor.app import ExecutorParts
from tests.component.executor.fake_session import FakeSessionServer
from tests.integration.executor.conftest import KYC_ISSUER_KEY as ISSUER_KEY  # trusted by the fixture
from tests.integration.executor.two_chains import TwoChains
from tests.support import eventually

pytestmark = [pytest.mark.chain, pytest.mark.ipfs]

SWAP_SELECTOR = keccak(text="swapExactETHForTokens(uint256,address[],address,uint256)")[:4]


async def test_treasury_rebalance_and_report(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts, ipfs_api: str
) -> None:
    c = two_chains.home
    home = two_chains.network.home
    market = await deploy_uniswap(home.rpc_url, DEV_PRIVATE_KEYS[0], eth_liquidity=50 * 10**18, price=3000)
    sid = two_chains.session(allowlist=[(market.router, SWAP_SELECTOR)], fund_wei=10 * 10**18)
    account = c.factory.functions.accountOf(sid).call()
    owner = c.actors.owner
    params = {
        "market": {"chain": home.name, **market.to_json()},
        "max_base_fee_gwei": 100,
        "kyc_attestation": sign_attestation(ISSUER_KEY, owner, 4, int(time.time()) + 3600),
    }
    svc = fake_session.service
    svc.add_session(
        str(sid),
        owner=owner,
        budget=100 * 10**18,
        spec=ss.SessionSpec(
            type="treasury_management",
            chains=[ch.name for ch in two_chains.network.chains],
            models={"risk": "gpt-4-enterprise-finance", "execution": "web3-agent-v4"},
            decorators=["kyc_tier4", "ofac_filter", "gas_optimizer_v3"],
            params_json=json.dumps(params),
        ),
    )
    not_allowed = {"chain": home.name, "to": "0x" + "5c" * 20, "value": 1}
    svc.submit(
        str(sid),
        [
            ("analyze_market", {}),
            ("rebalance", {}),
            ("publish_report", {"title": "13F"}),
            ("transfer", not_allowed),
        ],
    )
    await eventually(lambda: len(svc.done(str(sid))) == 4, timeout=60, what="treasury tasks done")
    t = svc.sessions[str(sid)].tasks
    assert [t[i].status for i in (1, 2, 3)] == [ss.TASK_STATUS_SUCCEEDED] * 3, [t[i].error for i in (1, 2, 3)]
    analysis = json.loads(t[1].result_json)["outputs"][0]
    assert analysis["price"] == 3000.0
    swap = json.loads(t[2].result_json)
    assert swap["plan"]["checked_by"] == ["kyc_tier4", "ofac_filter", "gas_optimizer_v3"]
    assert swap["plan"]["fees"]["max_priority_fee_per_gas"] > 0  # EIP-1559 fees from eth_feeHistory
    out = swap["outputs"][0]
    assert int(out["amount_in_wei"]) == 3 * 10**18  # 30% of the 10 ETH treasury
    assert c.w3.eth.get_balance(account) == 7 * 10**18
    received = await token_balance(home.rpc_url, market.stable, account)
    assert received == int(out["received"]) >= int(out["min_out"]) > 0
    assert (await read_market(home.rpc_url, market)).eth_reserve == 53 * 10**18
    published = json.loads(t[3].result_json)["outputs"][0]
    report_cid, filing = published["cid"], published["filing"]
    # no Arweave gateway configured: no archive copies, and no tx ids (test_treasury_arweave.py has them)
    assert "arweave_tx" not in published and "arweave_tx" not in filing
    async with KuboStore(ipfs_api) as store:
        report = json.loads(await store.get(report_cid))
        table = await store.get(filing["cid"])
    assert report["holdings"]["stable"]["balance"] == str(received)
    assert report["holdings"]["eth_wei"] == str(7 * 10**18)
    assert report["results"]["analyze_market"]["price"] == 3000.0
    # ... and the same holdings as a Form 13F information table (EDGAR XML), kept but never submitted
    dusd_value = round_half_up(Fraction(received, 10**18))
    assert filing["form"] == "13F-HR information table" and filing["submitted"] is False
    assert filing["size"] == len(table) and filing["usd_per_eth"] == "3000"
    assert filing["value_usd"] == str(21_000 + dusd_value)
    root = ET.fromstring(table)
    assert root.tag == f"{{{NAMESPACE}}}informationTable"
    eth_row, dusd_row = root.findall("t:infoTable", {"t": NAMESPACE})

    def cell(row: ET.Element, path: str) -> str:
        return row.findtext("/".join(f"t:{p}" for p in path.split("/")), "", {"t": NAMESPACE})

    assert [cell(eth_row, p) for p in ("cusip", "value", "shrsOrPrnAmt/sshPrnamt")] == [
        "000000000",
        "21000",
        "7",
    ]
    assert cell(dusd_row, "value") == str(dusd_value) and market.stable in cell(dusd_row, "nameOfIssuer")
    assert NOT_SUBMITTED.encode() in table and report_cid.encode() in table
    # A call outside the session's allowlist is refused by the account's guard: FAILED, named, no tx sent.
    assert t[4].status == ss.TASK_STATUS_FAILED and "ActionNotAllowed(" in t[4].error and not t[4].intents
    # The whole run (floats in the memory included) is checkpointed once the queue drains.
    fs = svc.sessions[str(sid)]
    await eventually(lambda: any(cp.seq == 4 for cp in fs.checkpoints), timeout=30, what="checkpoint 4")


async def test_kyc_tier_too_low_refuses_the_rebalance(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts
) -> None:
    home = two_chains.network.home
    sid = two_chains.session(fund_wei=10**18)
    owner = two_chains.home.actors.owner
    params = {
        "market": {
            "chain": home.name,
            "router": "0x" + "11" * 20,
            "pair": "0x" + "22" * 20,
            "weth": "0x" + "33" * 20,
            "stable": "0x" + "44" * 20,
        },
        "kyc_attestation": sign_attestation(ISSUER_KEY, owner, 2, int(time.time()) + 3600),
    }
    svc = fake_session.service
    svc.add_session(
        str(sid),
        owner=owner,
        spec=ss.SessionSpec(
            type="treasury_management",
            chains=[home.name],
            decorators=["kyc_tier4"],
            params_json=json.dumps(params),
        ),
    )
    svc.submit(str(sid), [("rebalance", {}), ("count", {})])
    await eventually(lambda: len(svc.done(str(sid))) == 2, timeout=30, what="tasks done")
    t = svc.sessions[str(sid)].tasks
    assert t[1].status == ss.TASK_STATUS_REFUSED and "tier 2" in t[1].error and not t[1].intents
    assert t[2].status == ss.TASK_STATUS_SUCCEEDED  # the session goes on
    assert Account.from_key(ISSUER_KEY).address in executor.registry.deps.kyc_issuers

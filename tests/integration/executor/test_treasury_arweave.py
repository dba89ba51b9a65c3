"""publish_report on an executor configured with an Arweave gateway: the JSON report and the Form 13F
information table go to a REAL IPFS node and to a REAL arlocal, each transaction id next to its CID in the
task result, readable back verified with the same bytes and the archive's tags (kinds "report" and
"filing", the session, the home chain's id, the task's seq)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from eth_account import Account

from agentgpt.arweave import ArweaveClient, Wallet, archive_tags
from agentgpt.clients import SessionClient
from agentgpt.filing import CONTENT_TYPE, KIND
from agentgpt.ipfs import KuboStore
from agentgpt.kyc import sign_attestation
from agentgpt.network import write_network
from agentgpt.runtime.config import load
from agentgpt.session.v1 import session_pb2 as ss
from apps.demo.uniswap import deploy_uniswap
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.executor.app import ExecutorParts, build_parts
from services.executor.config import ExecutorConfig
from services.executor.grpc_port import GrpcSessionPort
from tests.component.executor.fake_session import FakeSessionServer
from tests.integration.executor.conftest import EXECUTOR_KEY, KYC_ISSUER_KEY, TASK_FEE
from tests.integration.executor.two_chains import TwoChains
from tests.support import eventually

pytestmark = [pytest.mark.chain, pytest.mark.ipfs]


@pytest_asyncio.fixture(loop_scope="session")
async def archiving_executor(
    two_chains: TwoChains,
    fake_session: FakeSessionServer,
    ipfs_api: str,
    arweave_gateway: str,
    arweave_wallet: Wallet,
    tmp_path: Path,
) -> AsyncIterator[ExecutorParts]:
    """The integration executor (tests/integration/executor/conftest.py), archiving to arlocal."""
    network = tmp_path / "network.json"
    write_network(two_chains.network, network)
    config = load(
        ExecutorConfig,
        env={
            "AGENTGPT_ARWEAVE_GATEWAY": arweave_gateway,
            "AGENTGPT_ARWEAVE_WALLET_PATH": str(arweave_wallet.save(tmp_path / "arweave-wallet.json")),
            "AGENTGPT_ARWEAVE_MINE": "true",
        },
        executor_key=EXECUTOR_KEY,
        network=str(network),
        poll_interval=0.05,
        lease_ttl=5,
        ipfs_api=ipfs_api,
        anchor_retry_base=0.2,
        task_fee=TASK_FEE,
        kyc_issuers=(Account.from_key(KYC_ISSUER_KEY).address,),
    )
    client = SessionClient(fake_session.address)
    parts = build_parts(config, GrpcSessionPort(client))
    assert parts.arweave is not None and parts.engine.deps.anchors is not None
    jobs = [asyncio.create_task(parts.engine.run()), asyncio.create_task(parts.engine.deps.anchors.run())]
    try:
        yield parts
    finally:
        for job in jobs:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await parts.engine.stop()
        await parts.store.close()
        await parts.arweave.close()
        assert parts.chains is not None
        await parts.chains.close()
        await client.close()


async def test_report_and_filing_are_archived_to_arweave_next_to_their_cids(
    two_chains: TwoChains,
    fake_session: FakeSessionServer,
    archiving_executor: ExecutorParts,
    ipfs_api: str,
    arweave_gateway: str,
    arweave_wallet: Wallet,
) -> None:
    home = two_chains.network.home
    market = await deploy_uniswap(home.rpc_url, DEV_PRIVATE_KEYS[0], eth_liquidity=50 * 10**18, price=3000)
    sid = two_chains.session(fund_wei=10**18)
    owner = two_chains.home.actors.owner
    params = {
        "market": {"chain": home.name, **market.to_json()},
        "kyc_attestation": sign_attestation(KYC_ISSUER_KEY, owner, 4, int(time.time()) + 3600),
    }
    svc = fake_session.service
    svc.add_session(
        str(sid),
        owner=owner,
        budget=100 * 10**18,
        spec=ss.SessionSpec(
            type="treasury_management",
            chains=[home.name],
            models={"risk": "gpt-4-enterprise-finance", "execution": "web3-agent-v4"},
            decorators=["ofac_filter"],
            params_json=json.dumps(params),
        ),
    )
    svc.submit(str(sid), [("analyze_market", {}), ("publish_report", {"title": "13F"})])
    await eventually(lambda: len(svc.done(str(sid))) == 2, timeout=60, what="tasks done")
    task = svc.sessions[str(sid)].tasks[2]
    assert task.status == ss.TASK_STATUS_SUCCEEDED, task.error
    published = json.loads(task.result_json)["outputs"][0]
    filing = published["filing"]
    async with KuboStore(ipfs_api) as ipfs:
        report_bytes = await ipfs.get(published["cid"])
        table_bytes = await ipfs.get(filing["cid"])
    async with ArweaveClient(arweave_gateway) as reader:
        report_tx = await reader.read(published["arweave_tx"])  # verified: id, signature, data_root
        filing_tx = await reader.read(filing["arweave_tx"])
        found = await reader.find({"Session-Id": str(sid), "Chain-Id": str(home.chain_id)})
    assert report_tx.data == report_bytes and filing_tx.data == table_bytes
    assert report_tx.tag_map == archive_tags(kind="report", session_id=sid, chain_id=home.chain_id, seq=2)
    assert filing_tx.tag_map == archive_tags(
        kind=KIND, session_id=sid, chain_id=home.chain_id, seq=2, content_type=CONTENT_TYPE
    )
    assert report_tx.owner_address == filing_tx.owner_address == arweave_wallet.address
    assert sorted(found) == sorted([published["arweave_tx"], filing["arweave_tx"]])
    assert filing["submitted"] is False and filing["size"] == len(table_bytes)

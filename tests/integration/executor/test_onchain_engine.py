"""The engine end to end on real parts: two anvil chains with the contracts, a real IPFS node, the
session API (in-process fake until services/session lands) over real gRPC."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak
from multiformats import CID
from web3 import Web3

from agentgpt.checkpoint_format import verify_document
from agentgpt.errors import FailedPrecondition
from agentgpt.ipfs import CheckpointReader, KuboStore
from agentgpt.policies import encode_policies, policies_of
from agentgpt.sealing import Keyring, is_sealed_body, new_session_key, public_key_of
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.tasklog import ExecutorKey, LogEntry
from services.executor.app import ExecutorParts
from tests.component.executor.fake_session import FakeSessionServer
from tests.integration.executor.conftest import CHECKPOINT_KEY, EXECUTOR_KEY, HOME_ID, OTHER_ID, TASK_FEE
from tests.integration.executor.two_chains import TwoChains
from tests.support import eventually

pytestmark = [pytest.mark.chain, pytest.mark.ipfs]

RECIPIENT = Web3.to_checksum_address("0x" + "7e" * 20)


def spec(chains: TwoChains, **kw: Any) -> ss.SessionSpec:
    return ss.SessionSpec(
        type="treasury_management",
        chains=[c.name for c in chains.network.chains],
        decorators=["ofac_filter"],
        **kw,
    )


def balance(chains: TwoChains, who: str) -> int:
    return int(chains.home.w3.eth.get_balance(who))


async def test_transfer_checkpoint_anchor_and_charge(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts, ipfs_api: str
) -> None:
    c = two_chains.home
    sid = two_chains.session(allowlist=[(RECIPIENT, b"\x00" * 4)], fund_wei=10**18)
    svc = fake_session.service
    fresh = svc.add_session(str(sid), spec=spec(two_chains), budget=100 * 10**18)
    # the session's checkpoint key for this executor's epoch, as the session service would hand it out
    owner_secret = bytes.fromhex("a2" * 32)
    fresh.keys = [(1, ExecutorKey(EXECUTOR_KEY).address, new_session_key(1).key)]
    fresh.owner_public_key = public_key_of(owner_secret)
    svc.submit(str(sid), [("transfer", {"chain": "arbitrum", "to": RECIPIENT, "value": 1000}), ("count", {})])
    before = balance(two_chains, RECIPIENT)
    agpt_before = c.balance(c.actors.executor)
    fs = svc.sessions[str(sid)]
    await eventually(lambda: len(svc.done(str(sid))) == 2, timeout=30, what="tasks done")
    await eventually(
        lambda: any(len(cp.anchors) == 2 for cp in fs.checkpoints), timeout=30, what="anchored twice"
    )
    await eventually(lambda: c.session(sid)["spent"] > 0, timeout=30, what="budget charged on chain")

    # The transfer happened once, through the session account, and its intent was durable first.
    assert balance(two_chains, RECIPIENT) == before + 1000
    t1 = fs.tasks[1]
    assert t1.status == ss.TASK_STATUS_SUCCEEDED and len(t1.intents) == 1 and t1.gas_used > 0
    receipt = c.w3.eth.get_transaction_receipt(t1.intents[0].tx_hash)
    assert receipt["status"] == 1 and receipt["from"] == c.actors.executor
    first_running = fs.reports.index(
        (executor.engine.config.executor_id, fs.session.lease_epoch, 1, ss.TASK_STATUS_RUNNING)
    )
    assert first_running < fs.reports.index(
        (executor.engine.config.executor_id, fs.session.lease_epoch, 1, ss.TASK_STATUS_SUCCEEDED)
    )

    # The checkpoint is on IPFS (encrypted), and anchored on both chains with the same commitment.
    (cp,) = [x for x in fs.checkpoints if len(x.anchors) == 2]
    assert cp.seq == 2
    commitment = keccak(keccak(bytes(CID.decode(cp.cid))) + bytes(cp.state_root))
    assert c.factory.functions.latestCheckpoint(sid).call() == [2, commitment]
    o = two_chains.other
    assert o.anchors.functions.streamOf(c.chain_id, sid).call()[2:] == [2, commitment]
    assert {a.chain_id for a in cp.anchors} == {HOME_ID, OTHER_ID}
    async with KuboStore(ipfs_api) as store:
        # its body is sealed with the session's key, wrapped to the owner: the owner's key alone opens it
        # (the deployment-wide CHECKPOINT_KEY is only the legacy v1 reader's)
        owner = CheckpointReader(
            store, key=bytes.fromhex(CHECKPOINT_KEY), keyring=Keyring(private_key=owner_secret)
        )
        doc = await owner.read(cp.cid, session_id=str(sid), seq=2, state_root=bytes(cp.state_root))
        verified = verify_document(doc)
        assert verified.head == bytes(cp.state_root) and verified.log_head == bytes(fs.tasks[2].log_hash)
        assert not verified.sealed
        entries = [LogEntry.from_cbor_obj(e) for e in doc["body"]["entries"]]
        assert entries[0].tx_hashes == (bytes(t1.intents[0].tx_hash),)
        header_only = await CheckpointReader(store).read(cp.cid)  # no keys: the header, the body sealed
        assert is_sealed_body(header_only["body"]) and verify_document(header_only).sealed
        with pytest.raises(FailedPrecondition, match="epoch-1 data key"):
            await CheckpointReader(store, keyring=Keyring(private_key=bytes.fromhex("a3" * 32))).read(cp.cid)

    # Budget: both tasks metered and charged on chain (chargeBudget pays the executor from escrow).
    expected = 2 * TASK_FEE + t1.gas_used * 10**9
    assert int(t1.cost) + int(fs.tasks[2].cost) == expected
    await eventually(lambda: c.session(sid)["spent"] == expected, timeout=30, what="all charged")
    assert c.balance(c.actors.executor) == agpt_before + expected


async def test_crash_after_intent_resumes_the_same_transaction(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts
) -> None:
    c = two_chains.home
    sid = two_chains.session(allowlist=[(RECIPIENT, b"\x00" * 4)], fund_wei=10**18)
    svc = fake_session.service
    svc.add_session(str(sid), spec=spec(two_chains), budget=100 * 10**18)
    # Executor A signed and recorded the step's transaction, then died before broadcasting it.
    account = c.factory.functions.accountOf(sid).call()
    acct = c.contract("SessionAccount", account)
    nonce = c.w3.eth.get_transaction_count(c.actors.executor)
    tx = acct.functions.execute(1, 0, RECIPIENT, 555, b"").build_transaction(
        {
            "from": c.actors.executor,
            "nonce": nonce,
            "gas": 200_000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**6,
            "chainId": c.chain_id,
        }
    )
    signed = Account.sign_transaction(tx, EXECUTOR_KEY)
    svc.sessions[str(sid)].lease_executor = "executor-A"
    svc.submit(str(sid), [("transfer", {"chain": "arbitrum", "to": RECIPIENT, "value": 555})])
    svc.sessions[str(sid)].tasks[1].status = ss.TASK_STATUS_RUNNING
    svc.sessions[str(sid)].tasks[1].intents.append(
        ss.TxIntent(
            chain_id=c.chain_id,
            nonce=nonce,
            tx_hash=keccak(signed.raw_transaction),
            raw_tx=signed.raw_transaction,
        )
    )
    before = balance(two_chains, RECIPIENT)
    await eventually(lambda: len(svc.done(str(sid))) == 1, timeout=30, what="task resumed")
    t1 = svc.sessions[str(sid)].tasks[1]
    assert t1.status == ss.TASK_STATUS_SUCCEEDED, t1.error
    assert json.loads(t1.result_json)["outputs"] == [
        {"resumed_tx": "0x" + keccak(signed.raw_transaction).hex()}
    ]
    assert c.w3.eth.get_transaction_receipt(keccak(signed.raw_transaction))["status"] == 1
    assert balance(two_chains, RECIPIENT) == before + 555  # once, by the recorded transaction


async def test_anchoring_retries_without_stopping_tasks(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts
) -> None:
    c, o = two_chains.home, two_chains.other
    sid = two_chains.session()
    o.tx(o.anchors.functions.revokeWriter(c.chain_id, sid), o.actors.admin)  # the other chain refuses us
    svc = fake_session.service
    svc.add_session(str(sid), spec=spec(two_chains, checkpoint_interval=3), budget=100 * 10**18)
    svc.submit(str(sid), [("count", {"i": i}) for i in range(9)])
    queue = executor.engine.deps.anchors
    assert queue is not None
    failures0 = queue.failures
    await eventually(lambda: len(svc.done(str(sid))) == 9, timeout=30, what="tasks went on")
    assert queue.failures > failures0  # the polygon anchor kept failing meanwhile
    # The home chain is not held up by the failing one.
    await eventually(
        lambda: c.factory.functions.latestCheckpoint(sid).call()[0] == 9, timeout=30, what="home anchored"
    )
    assert o.anchors.functions.streamOf(c.chain_id, sid).call()[2] == 0
    o.tx(o.anchors.functions.grantWriter(c.chain_id, sid, c.actors.executor), o.actors.admin)
    await eventually(
        lambda: o.anchors.functions.streamOf(c.chain_id, sid).call()[2] == 9,
        timeout=60,
        what="anchored after the chain recovered",
    )
    # Superseded checkpoints were not anchored one by one: the newest covers them.
    fs = svc.sessions[str(sid)]
    await eventually(
        lambda: any(cp.seq == 9 and len(cp.anchors) == 2 for cp in fs.checkpoints),
        timeout=30,
        what="anchors recorded with the session service",
    )


async def test_the_action_policy_refuses_a_call_with_the_rule_off_chain_and_on_chain(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts
) -> None:
    """Plain ETH transfers to RECIPIENT, at most 500 wei each and 2 calls in all: the executor refuses an
    oversized one before sending anything; the call count only the chain keeps refuses the third (its
    simulation reverts with PolicyViolation): both REFUSED tasks name the rule, and nothing moved for them."""
    policy = {"max_per_call": 500, "max_calls": 2}
    allow = [{"target": RECIPIENT, "selector": "0x00000000", "policy": policy}]
    sid = two_chains.session(
        allowlist=[(RECIPIENT, b"\x00" * 4)],
        fund_wei=10**18,
        policies=encode_policies(policies_of({"allowlist": allow})),
    )
    svc = fake_session.service
    svc.add_session(str(sid), spec=spec(two_chains, params_json=json.dumps({"allowlist": allow})))
    before = balance(two_chains, RECIPIENT)
    send = [400, 600, 100, 50]
    svc.submit(str(sid), [("transfer", {"chain": "arbitrum", "to": RECIPIENT, "value": v}) for v in send])
    await eventually(lambda: len(svc.done(str(sid))) == 4, timeout=60, what="tasks done")
    tasks = svc.sessions[str(sid)].tasks
    assert [tasks[i].status for i in (1, 2, 3, 4)] == [
        ss.TASK_STATUS_SUCCEEDED,
        ss.TASK_STATUS_REFUSED,
        ss.TASK_STATUS_SUCCEEDED,
        ss.TASK_STATUS_REFUSED,
    ]
    assert "policy: " in tasks[2].error and "rule max_per_call" in tasks[2].error and not tasks[2].intents
    assert "rule max_calls" in tasks[4].error and not tasks[4].intents
    assert balance(two_chains, RECIPIENT) == before + 500
    account = two_chains.home.account_contract(sid)
    assert account.functions.policyOf(RECIPIENT, b"\x00" * 4).call()[6] == 2  # calls made

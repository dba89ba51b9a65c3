"""The issue's "done when": over gRPC, with real anvil + deployed contracts, a real IPFS node, and SessionDB
on SQLite and on PostgreSQL, a session goes DRAFT (NFT minted) -> ACTIVE (workflow and executor committed
on chain) -> PAUSED -> ACTIVE -> COMPLETED (NFT burned, log CID on IPFS); a restarted service resumes its
timers and expires a draft both in SessionDB and on chain."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3.exceptions import ContractCustomError

from agentgpt.chain import eip712
from agentgpt.chain.deploy import Deployment, deploy_all
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.contracts import load_artifact
from agentgpt.ipfs import KuboStore
from agentgpt.lifecycle import Durations
from agentgpt.policies import policies_of, policy_hash
from agentgpt.runtime.config import load
from agentgpt.runtime.server import RunningService
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.spec import allowlist_of
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.session.app import build
from services.session.config import SessionConfig
from services.session.model import verify_chain
from tests.component.session.harness import (
    SERVICE_MD,
    SPEC_YAML,
    Harness,
    Owner,
    new_key,
    server_config,
)
from tests.fixtures.postgres import create_database, drop_database
from tests.support import eventually

pytestmark = [pytest.mark.chain, pytest.mark.ipfs]

E18 = 10**18
ROUTER = "0x" + "11" * 20
SWAP = "0x38ed1739"
# The seed's treasury spec plus the one call its account may make (a router swap).
ALLOWLIST_SPEC = SPEC_YAML.replace(
    "decorators:",
    f"  allowlist:\n    - {{target: '{ROUTER}', selector: '{SWAP}', policy: {{max_calls: 5}}}}\ndecorators:",
)
DURATIONS = Durations(draft=8, active=600, paused=300)
ADMIN, OWNER, EXECUTOR, RELAYER = (
    DEV_PRIVATE_KEYS[0],
    DEV_PRIVATE_KEYS[1],
    DEV_PRIVATE_KEYS[2],
    DEV_PRIVATE_KEYS[5],
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def deployment(eth_rpc: str) -> Deployment:
    relayer = Account.from_key(RELAYER).address
    dep = await deploy_all(eth_rpc, ADMIN, oracle=relayer, durations=DURATIONS, min_bond=100 * E18)
    w3 = Web3(Web3.HTTPProvider(eth_rpc))
    agpt = w3.eth.contract(address=dep.contracts["AGPT"], abi=load_artifact("AGPT").abi)
    registry = w3.eth.contract(
        address=dep.contracts["ExecutorRegistry"], abi=load_artifact("ExecutorRegistry").abi
    )
    admin, owner, executor = (Account.from_key(k).address for k in (ADMIN, OWNER, EXECUTOR))

    def tx(fn: Any, sender: str) -> None:
        receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
        assert receipt["status"] == 1

    tx(agpt.functions.mint(owner, 10_000 * E18), admin)
    tx(agpt.functions.mint(executor, 1_000 * E18), admin)
    tx(agpt.functions.approve(registry.address, 100 * E18), executor)
    tx(registry.functions.bond(100 * E18), executor)
    return dep


class ChainOwner:
    """Signs what the contract needs (BySig structs with the factory nonce, the AGPT permit)."""

    def __init__(self, w3: Web3, dep: Deployment) -> None:
        self.w3, self.dep = w3, dep
        self.factory = w3.eth.contract(
            address=dep.contracts["SessionFactory"], abi=load_artifact("SessionFactory").abi
        )
        self.address = Account.from_key(OWNER).address

    def nonce(self) -> int:
        return int(self.factory.functions.nonces(self.address).call())

    def sign(self, action: str, session: pb.Session | None, req: Any) -> bytes:
        common_args = {
            "chain_id": self.dep.chain_id,
            "factory": self.factory.address,
            "nonce": self.nonce(),
            "deadline": req.auth.deadline,
        }
        if action == "create":
            from agentgpt.spec import parse_yaml

            return eip712.sign_create_session(
                OWNER,
                owner=self.address,
                workflow_hash=parse_yaml(req.spec_yaml).workflow_hash(),
                initial_budget=int(req.initial_budget),
                **common_args,
            )
        assert session is not None
        if action == "activate":
            return eip712.sign_activate(
                OWNER,
                session_id=int(session.session_id),
                workflow_hash=session.workflow_hash,
                executor=req.executor,
                allowlist=allowlist_of(json.loads(session.spec.params_json or "{}")),
                policy_hash=policy_hash(policies_of(json.loads(session.spec.params_json or "{}"))),
                **common_args,
            )
        if action == "complete":
            return eip712.sign_complete(OWNER, session_id=int(session.session_id), **common_args)
        raise AssertionError(action)

    def permit(self, value: int, deadline: int) -> tuple[bytes, int]:
        agpt = self.w3.eth.contract(address=self.dep.contracts["AGPT"], abi=load_artifact("AGPT").abi)
        p = eip712.sign_permit(
            OWNER,
            chain_id=self.dep.chain_id,
            token=agpt.address,
            owner=self.address,
            spender=self.factory.address,
            value=value,
            nonce=int(agpt.functions.nonces(self.address).call()),
            deadline=deadline,
        )
        return p.r + p.s + bytes([p.v]), deadline


async def _database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}", None
    server = request.getfixturevalue("postgres_url")
    url = await create_database(server)
    return url, lambda: drop_database(server, url)


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path, eth_rpc: str, deployment: Deployment, ipfs_api: str
) -> AsyncIterator[dict[str, Any]]:
    url, drop = await _database(request.param, tmp_path, request)
    manifest = tmp_path / "network.json"
    manifest.write_text(
        json.dumps(
            {
                # the chains the specs name (SPEC_YAML: [arbitrum, polygon]); only the home chain is used
                "chains": [
                    {
                        "name": "arbitrum",
                        "chain_id": deployment.chain_id,
                        "rpc_url": eth_rpc,
                        "contracts": deployment.contracts,
                    },
                    {"name": "polygon", "chain_id": deployment.chain_id + 1, "rpc_url": "http://127.0.0.1:9"},
                ]
            }
        )
    )
    config = load(
        SessionConfig,
        env={},
        database_url=url,
        network=str(manifest),
        relayer_key=RELAYER,
        trust_service_header=True,
        ipfs_api=ipfs_api,
        draft_ttl=DURATIONS.draft,
        active_ttl=DURATIONS.active,
        paused_ttl=DURATIONS.paused,
        timer_interval=0.2,
        metadata_interval=0.2,
    )
    running: list[Harness] = []

    async def start() -> Harness:
        service = RunningService(await build(config), server_config())
        await service.start()
        h = Harness(service)
        running.append(h)
        return h

    async def stop(h: Harness) -> None:
        running.remove(h)
        await h.close()
        await h.service.stop()

    try:
        yield {
            "start": start,
            "stop": stop,
            "w3": Web3(Web3.HTTPProvider(eth_rpc)),
            "deployment": deployment,
            "ipfs_api": ipfs_api,
        }
    finally:
        for h in list(running):
            await stop(h)
        if drop:
            await drop()


async def test_session_lifecycle_on_chain_and_ipfs(stack: dict[str, Any]) -> None:
    w3, dep = stack["w3"], stack["deployment"]
    signer = ChainOwner(w3, dep)
    owner = Owner(OWNER, dep.chain_id, chain_signer=signer.sign)
    executor = Account.from_key(EXECUTOR).address
    h: Harness = await stack["start"]()
    assert w3.eth.get_balance(Account.from_key(RELAYER).address) > 0
    owner_eth_before = w3.eth.get_balance(owner.address)

    # DRAFT: minted through createSessionBySig, budget moved with the owner's permit (owner pays no gas)
    deadline = int(time.time()) + 600
    permit, permit_deadline = signer.permit(500 * E18, deadline)
    create = owner.sign(
        pb.CreateSessionRequest(
            idempotency_key=new_key(),
            spec_yaml=ALLOWLIST_SPEC,
            initial_budget=str(500 * E18),
            budget_permit=permit,
            budget_permit_deadline=permit_deadline,
        ),
        deadline=deadline,
    )
    s = (await h.stub.CreateSession(owner.chain_sign("create", None, create))).session
    sid = int(s.session_id)
    assert s.state == common.SESSION_STATE_DRAFT
    assert signer.factory.functions.ownerOf(sid).call() == owner.address
    assert signer.factory.functions.stateOf(sid).call() == 1
    assert w3.eth.get_transaction_receipt(s.mint_tx_hash)["status"] == 1
    assert w3.eth.get_balance(owner.address) == owner_eth_before

    # ACTIVE: workflow hash, executor and the spec's allowlist committed on chain first
    act = await h.activate(owner, s, executor)
    assert act.session.state == common.SESSION_STATE_ACTIVE
    on_chain = signer.factory.functions.getSession(sid).call()
    assert on_chain[1] == 2 and on_chain[5] == executor and on_chain[12] == s.workflow_hash
    assert signer.factory.functions.isAllowed(
        sid, Web3.to_checksum_address(ROUTER), bytes.fromhex(SWAP[2:])
    ).call()
    assert not signer.factory.functions.isAllowed(sid, Web3.to_checksum_address(ROUTER), b"\x00" * 4).call()
    # and the spec's action policy, signed by the owner with the activation, is the account's
    account = w3.eth.contract(
        address=signer.factory.functions.accountOf(sid).call(), abi=load_artifact("SessionAccount").abi
    )
    rule = account.functions.policyOf(Web3.to_checksum_address(ROUTER), bytes.fromhex(SWAP[2:])).call()
    assert rule[0] is True and rule[3] == 5  # exists, max_calls

    # PAUSED by a service identity (the relayer holds ORACLE_ROLE), then ACTIVE again
    pause = pb.PauseSessionRequest(idempotency_key=new_key(), session_id=s.session_id, reason="node failure")
    assert (
        await h.stub.PauseSession(pause, metadata=SERVICE_MD)
    ).session.state == common.SESSION_STATE_PAUSED
    assert signer.factory.functions.stateOf(sid).call() == 3
    resume = owner.sign(
        pb.ResumeSessionRequest(idempotency_key=new_key(), session_id=s.session_id, reason="rehydrated")
    )
    assert (
        await h.stub.ResumeSession(resume, metadata=SERVICE_MD)
    ).session.state == common.SESSION_STATE_ACTIVE
    assert signer.factory.functions.stateOf(sid).call() == 2

    # COMPLETED: event log archived to IPFS, NFT burned
    complete = owner.sign(pb.CompleteSessionRequest(idempotency_key=new_key(), session_id=s.session_id))
    done = await h.stub.CompleteSession(owner.chain_sign("complete", act.session, complete))
    assert done.session.state == common.SESSION_STATE_COMPLETED
    assert signer.factory.functions.stateOf(sid).call() == 4
    assert signer.factory.functions.balanceOf(owner.address).call() == 0  # burned
    async with KuboStore(stack["ipfs_api"]) as ipfs:
        archived = json.loads(await ipfs.get(done.log_cid))
    assert [e["type"] for e in archived["events"]] == ["created", "activated", "paused", "resumed"]
    evs = await h.control.db.events_after(s.session_id, 0)
    assert verify_chain(evs) and archived["head"] == "0x" + evs[3].hash.hex()
    assert json.loads(evs[-1].data_json)["log_cid"] == done.log_cid


async def test_the_nft_shows_the_session_from_its_metadata_on_ipfs(stack: dict[str, Any]) -> None:
    """ERC-721 metadata JSON on IPFS behind tokenURI, replaced after every change, with ERC-4906 events."""
    w3, dep = stack["w3"], stack["deployment"]
    signer = ChainOwner(w3, dep)
    factory = signer.factory
    owner = Owner(OWNER, dep.chain_id, chain_signer=signer.sign)
    executor = Account.from_key(EXECUTOR).address
    h: Harness = await stack["start"]()
    assert factory.functions.supportsInterface(bytes.fromhex("49064906")).call()  # ERC-4906
    deadline = int(time.time()) + 600
    permit, pd = signer.permit(7 * E18, deadline)
    create = owner.sign(
        pb.CreateSessionRequest(
            idempotency_key=new_key(),
            spec_yaml=SPEC_YAML,
            initial_budget=str(7 * E18),
            budget_permit=permit,
            budget_permit_deadline=pd,
        ),
        deadline=deadline,
    )
    s = (await h.stub.CreateSession(owner.chain_sign("create", None, create))).session
    sid = int(s.session_id)

    async def document(state: str) -> dict[str, Any]:
        uri = await asyncio.to_thread(factory.functions.tokenURI(sid).call)
        assert uri.startswith("ipfs://"), uri
        async with KuboStore(stack["ipfs_api"]) as ipfs:
            doc: dict[str, Any] = json.loads(await ipfs.get(uri.removeprefix("ipfs://")))
        assert doc["properties"]["state"] == state, doc["properties"]
        return doc

    draft = await eventually(lambda: document("DRAFT"), timeout=20)
    assert draft["name"] == f"AgentGPT session #{sid}" and draft["image"].startswith("data:image/svg+xml")
    props = draft["properties"]
    assert props["owner"] == owner.address and props["checkpoint"] is None
    assert props["budget"] == {"remaining": str(7 * E18), "spent": "0", "decimals": 18}
    assert {"trait_type": "State", "value": "DRAFT"} in draft["attributes"]
    async with KuboStore(stack["ipfs_api"]) as ipfs:  # the spec it links is on IPFS too
        spec = json.loads(await ipfs.get(props["spec_cid"]))
    assert spec["type"] == s.spec.type

    await h.activate(owner, s, executor)
    active = await eventually(lambda: document("ACTIVE"), timeout=20)
    assert active["properties"]["executor"] == executor
    pause = pb.PauseSessionRequest(idempotency_key=new_key(), session_id=s.session_id, reason="node failure")
    await h.stub.PauseSession(pause, metadata=SERVICE_MD)
    await eventually(lambda: document("PAUSED"), timeout=20)

    # ERC-4906: an update for each change the document shows (executor, states) and for each new document
    updates = factory.events.MetadataUpdate().get_logs(from_block=0)
    mine = [u for u in updates if int(u["args"]["_tokenId"]) == sid]
    calls = [
        factory.decode_function_input(w3.eth.get_transaction(u["transactionHash"])["input"]) for u in mine
    ]
    uri_sets = [args["uri"] for fn, args in calls if fn.fn_name == "setTokenURI"]
    assert len(uri_sets) >= 3 and len(mine) >= len(uri_sets) + 3  # (assign, ACTIVE, PAUSED)
    # only the control plane may point the token elsewhere, and only at IPFS
    refusals = {
        "ipfs://bafyfake": (OWNER, "AccessControlUnauthorizedAccount(address,bytes32)"),
        "https://example.com/x.json": (RELAYER, "InvalidTokenURI()"),
    }
    for uri, (key, error) in refusals.items():
        with pytest.raises(ContractCustomError) as refused:
            factory.functions.setTokenURI(sid, uri).call({"from": Account.from_key(key).address})
        assert str(refused.value.data).startswith("0x" + function_signature_to_4byte_selector(error).hex())


async def test_restarted_service_resumes_timers(stack: dict[str, Any]) -> None:
    w3, dep = stack["w3"], stack["deployment"]
    signer = ChainOwner(w3, dep)
    owner = Owner(OWNER, dep.chain_id, chain_signer=signer.sign)
    h: Harness = await stack["start"]()
    deadline = int(time.time()) + 600
    permit, pd = signer.permit(E18, deadline)
    create = owner.sign(
        pb.CreateSessionRequest(
            idempotency_key=new_key(),
            spec_yaml=SPEC_YAML,
            initial_budget=str(E18),
            budget_permit=permit,
            budget_permit_deadline=pd,
        ),
        deadline=deadline,
    )
    s = (await h.stub.CreateSession(owner.chain_sign("create", None, create))).session
    await stack["stop"](h)  # down while the draft timer runs out
    await asyncio.sleep(DURATIONS.draft + 1)
    h2: Harness = await stack["start"]()

    async def expired() -> None:
        got = await h2.stub.GetSession(pb.GetSessionRequest(session_id=s.session_id), metadata=SERVICE_MD)
        assert got.session.state == common.SESSION_STATE_TERMINATED

    async def expired_on_chain() -> None:
        state = await asyncio.to_thread(signer.factory.functions.stateOf(int(s.session_id)).call)
        assert state == 5

    await eventually(expired, timeout=20)
    await eventually(expired_on_chain, timeout=20)


async def test_the_owner_client_drives_a_session_through_every_action(stack: dict[str, Any]) -> None:
    """agentgpt.owner.SessionOwner (what the CLI's owner commands and the demo use), in-process against the
    service on the real chain: every action, each checked on chain and in the answer."""
    from agentgpt.clients import SessionClient
    from agentgpt.network import ChainInfo
    from agentgpt.owner import SessionOwner

    w3, dep = stack["w3"], stack["deployment"]
    factory = w3.eth.contract(
        address=dep.contracts["SessionFactory"], abi=load_artifact("SessionFactory").abi
    )
    h: Harness = await stack["start"]()
    home = ChainInfo("arbitrum", dep.chain_id, w3.provider.endpoint_uri, contracts=dep.contracts)  # type: ignore[attr-defined]
    client = SessionClient(h.service.address)
    owner = SessionOwner(OWNER, home, client)
    executor = Account.from_key(EXECUTOR).address
    try:
        # DRAFT lasts DURATIONS.draft (8 s) here: each draft's DRAFT-only actions come right after it is made
        s = await owner.create(SPEC_YAML, budget=100 * E18)
        sid = s.session_id
        assert s.state == common.SESSION_STATE_DRAFT
        s = await owner.activate(sid, executor)
        assert s.state == common.SESSION_STATE_ACTIVE and factory.functions.stateOf(int(sid)).call() == 2
        assert factory.functions.ownerOf(int(sid)).call() == owner.address
        s = await owner.update_budget(sid, 5 * E18)
        assert int(s.budget) == 105 * E18 and factory.functions.budgetOf(int(sid)).call()[0] == 105 * E18
        submitted = await owner.submit(sid, [("analyze_market", {})])
        assert list(submitted.task_seqs) == [1]
        assert (await owner.pause(sid, "owner pause")).state == common.SESSION_STATE_PAUSED
        assert (await owner.resume(sid, "owner resume")).state == common.SESSION_STATE_ACTIVE
        assert (await owner.inspect(sid)).session.session_id == sid
        done = await owner.complete(sid)
        assert done.session.state == common.SESSION_STATE_COMPLETED and done.log_cid
        assert factory.functions.stateOf(int(sid)).call() == 4

        other = await owner.create(SPEC_YAML, budget=E18, idempotency_key="owner-client-terminate")
        edited = await owner.edit_params(other.session_id, {"max_base_fee_gwei": 50})
        assert json.loads(edited.spec.params_json) == {"max_base_fee_gwei": 50}
        attached = await owner.attach_decorators(other.session_id, ["gas_optimizer_v3"])
        assert list(attached.spec.decorators)[-1] == "gas_optimizer_v3"
        ended = await owner.terminate(other.session_id, "changed my mind")
        assert ended.state == common.SESSION_STATE_TERMINATED
        assert factory.functions.stateOf(int(other.session_id)).call() == 5
        assert (await owner.get(other.session_id)).spec.decorators == attached.spec.decorators
    finally:
        await owner.close()
        await client.close()

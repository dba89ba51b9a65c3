"""Claims and penalties on a real chain: the recovery oracle judges a data-loss claim and a false recovery
claim from the chain's record (a stand-in indexer serving its events) and a content store, and applies the
penalty through the deployed ExecutorRegistry with a key holding ORACLE_ROLE — once per evidence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from agentgpt.chain.sender import KeySender
from agentgpt.clients import IndexerClient
from agentgpt.errors import FailedPrecondition, InvalidArgument
from agentgpt.ipfs import CheckpointReader, CheckpointWriter, EmbeddedStore
from agentgpt.network import ChainInfo
from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.tasklog import ExecutorKey
from agentgpt.verify import CheckpointVerifier
from services.recovery_oracle.claims import ClaimJudge, RegistryPenalties
from tests.component.recovery.fakes import HOME, SID, Checkpoints, Indexer
from tests.contracts.chain import Chain
from tests.contracts.conftest import MIN_BOND

pytestmark = pytest.mark.chain


@pytest.fixture
async def senders() -> AsyncIterator[list[KeySender]]:
    made: list[KeySender] = []
    yield made
    for sender in made:
        await sender.close()


def judge(
    chain: Chain, indexer: Indexer, store: EmbeddedStore, senders: list[KeySender], *, penalties: bool = True
) -> ClaimJudge:
    info = ChainInfo(
        name="home",
        chain_id=chain.chain_id,
        rpc_url=chain.w3.provider.endpoint_uri,
        contracts=chain.deployment.contracts,  # type: ignore[attr-defined]
    )
    reader = CheckpointReader(store)
    sender = KeySender(info, chain.key_of[chain.actors.admin])  # the deployer holds ORACLE_ROLE
    senders.append(sender)
    return ClaimJudge(
        CheckpointVerifier(cast(IndexerClient, indexer), reader),
        store,
        reader,
        RegistryPenalties(sender) if penalties else None,
        CollectorRegistry(),
        attempts=2,
        window=0.1,
    )


def claim(kind: int, executor: str, evidence: str, challenger: str = "") -> pb.SubmitClaimRequest:
    return pb.SubmitClaimRequest(
        idempotency_key="k",
        session_id=SID,
        kind=kind,
        executor=executor,
        evidence=evidence,
        challenger=challenger,
    )


def bond(chain: Chain, who: str) -> int:
    active, unbonding, _ = chain.registry.functions.bondOf(who).call()
    return int(active) + int(unbonding)


async def test_a_lost_checkpoint_burns_five_percent_of_the_bond_once(
    chain: Chain, tmp_path: Path, senders: list[KeySender]
) -> None:
    a = chain.actors
    key = ExecutorKey(chain.key_of[a.executor])
    elsewhere = EmbeddedStore(
        tmp_path / "executor-node"
    )  # where the executor put it; the oracle's node lacks it
    mine = EmbeddedStore(tmp_path / "oracle-node")
    lost = await Checkpoints(CheckpointWriter(elsewhere), key=key).make(3)
    indexer = Indexer(executor=a.executor)
    indexer.anchor(HOME, lost, writer=a.executor)
    j = judge(chain, indexer, mine, senders)
    supply = chain.agpt.functions.totalSupply().call()

    wrong = await j.submit(claim(pb.CLAIM_KIND_DATA_LOSS, a.executor2, lost.cid))
    assert not wrong.upheld and f"anchored by {a.executor}" in wrong.explanation

    resp = await j.submit(claim(pb.CLAIM_KIND_DATA_LOSS, a.executor, lost.cid))
    assert resp.upheld and resp.tx_hash and "could not be fetched from IPFS in 2 attempts" in resp.explanation
    burned = MIN_BOND * 500 // 10_000
    assert bond(chain, a.executor) == MIN_BOND - burned
    assert chain.agpt.functions.totalSupply().call() == supply - burned
    event = chain.events(chain.w3.eth.get_transaction_receipt(resp.tx_hash), chain.registry, "Burned")[0][
        "args"
    ]
    assert event["evidence"] == f"data_loss home_chain={HOME} session={SID} seq=3 cid={lost.cid}"

    again = await j.submit(claim(pb.CLAIM_KIND_DATA_LOSS, a.executor, lost.cid))  # idempotent
    assert again.upheld and not again.tx_hash and "already penalised" in again.explanation
    assert bond(chain, a.executor) == MIN_BOND - burned

    # a checkpoint the oracle can fetch is no data loss
    kept = await Checkpoints(CheckpointWriter(mine), key=key).make(2)
    indexer.anchor(HOME, kept, writer=a.executor)
    refused = await j.submit(claim(pb.CLAIM_KIND_DATA_LOSS, a.executor, kept.cid))
    assert not refused.upheld and "is retrievable" in refused.explanation
    assert bond(chain, a.executor) == MIN_BOND - burned


async def test_a_false_recovery_claim_slashes_fifteen_percent_to_the_challenger(
    chain: Chain, tmp_path: Path, senders: list[KeySender]
) -> None:
    a = chain.actors
    key = ExecutorKey(chain.key_of[a.executor])
    store = EmbeddedStore(tmp_path / "ipfs")
    honest = Checkpoints(CheckpointWriter(store), key=key)
    anchored = await honest.make(3)
    indexer = Indexer(executor=a.executor)
    indexer.anchor(HOME, anchored, writer=a.executor)
    # the executor answers a rehydration with another state for seq 3, signed by itself
    forged = await Checkpoints(CheckpointWriter(store), key=key).make(3, memory={"forged": True})
    j = judge(chain, indexer, store, senders)
    before = chain.balance(a.stranger)

    with pytest.raises(InvalidArgument, match="challenger"):
        await j.submit(claim(pb.CLAIM_KIND_FALSE_RECOVERY_CLAIM, a.executor, forged.cid))
    holds = await j.submit(claim(pb.CLAIM_KIND_FALSE_RECOVERY_CLAIM, a.executor, anchored.cid, a.stranger))
    assert not holds.upheld and "verifies" in holds.explanation
    not_theirs = await j.submit(
        claim(pb.CLAIM_KIND_FALSE_RECOVERY_CLAIM, a.executor2, forged.cid, a.stranger)
    )
    assert not not_theirs.upheld and f"signed by {a.executor}" in not_theirs.explanation

    resp = await j.submit(claim(pb.CLAIM_KIND_FALSE_RECOVERY_CLAIM, a.executor, forged.cid, a.stranger))
    assert resp.upheld and resp.tx_hash and "disagree" in resp.explanation
    slashed = MIN_BOND * 1500 // 10_000
    assert chain.balance(a.stranger) == before + slashed
    assert bond(chain, a.executor) == MIN_BOND - slashed
    again = await j.submit(claim(pb.CLAIM_KIND_FALSE_RECOVERY_CLAIM, a.executor, forged.cid, a.stranger))
    assert again.upheld and not again.tx_hash and chain.balance(a.stranger) == before + slashed


async def test_claims_need_the_oracle_key_and_well_formed_evidence(
    chain: Chain, tmp_path: Path, senders: list[KeySender]
) -> None:
    store = EmbeddedStore(tmp_path / "ipfs")
    with pytest.raises(FailedPrecondition, match="AGENTGPT_ORACLE_KEY"):
        await judge(chain, Indexer(), store, senders, penalties=False).submit(
            claim(
                pb.CLAIM_KIND_DATA_LOSS,
                chain.actors.executor,
                "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            )
        )
    with pytest.raises(InvalidArgument, match="evidence"):
        await judge(chain, Indexer(), store, senders).submit(
            claim(pb.CLAIM_KIND_DATA_LOSS, chain.actors.executor, "seq 5")
        )

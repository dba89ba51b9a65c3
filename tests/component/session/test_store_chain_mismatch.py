"""A SessionDB row is an answer to a create only if that create's mint made it: a chain that was reset (or
another chain) minting the same token id gets a refusal naming both, never the stale row as a success."""

from __future__ import annotations

import grpc
import pytest

from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.session.chain import Receipt
from services.session.memory import InMemorySessionChain

from .conftest import MakeService
from .harness import Owner, new_key
from .test_lifecycle import expect_status


@pytest.mark.parametrize(
    ("chain_id", "budget"),
    [
        (31337, "5"),  # the same chain id, reset: NFT #1 minted again by another transaction
        (31339, "1000"),  # another chain: even the same transaction hash is another mint
    ],
    ids=["reset-chain", "other-chain"],
)
async def test_create_refuses_a_row_minted_by_another_transaction_or_chain(
    make_service: MakeService, owner: Owner, chain_id: int, budget: str
) -> None:
    h = await make_service(chain=InMemorySessionChain(), timer_interval=3600)
    first = await h.create(owner, budget="1000")
    assert first.session_id == "1"
    old = await h.control.db.require("1")
    await h.close()
    await h.service.stop()

    # The same SessionDB against a new chain, which mints its own NFT #1.
    fresh = InMemorySessionChain(chain_id=chain_id)
    h2 = await make_service(chain=fresh, timer_interval=3600)
    again = Owner(DEV_PRIVATE_KEYS[1], chain_id)
    details = await expect_status(
        h2.create(again, budget=budget),
        grpc.StatusCode.FAILED_PRECONDITION,
        "SessionDB and the home chain disagree",
    )
    assert fresh.mints == 1
    assert (
        f"chain {chain_id} minted NFT #1" in details
        and f"0x{old.mint_tx_hash.hex()} on chain 31337" in details
    )
    assert (await h2.control.db.require("1")) == old  # the stored session is left as it was


async def test_finishing_the_same_mint_twice_answers_the_same_record(
    make_service: MakeService, owner: Owner
) -> None:
    h = await make_service(timer_interval=3600)
    s = await h.create(owner)
    rec = await h.control.db.require(s.session_id)
    receipt = Receipt(rec.mint_tx_hash, True, 1, 21000, int(s.session_id))
    # The reconciler settling a create whose row is already there: the row is this mint's.
    again = await h.control.relay.finish_create("p", new_key(), {}, receipt)
    assert again == rec

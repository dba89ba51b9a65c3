"""agentgpt.verify.check_closing: the final anchor, the archived log on IPFS and its copy on Arweave, as
`agentgpt verify` checks them for an ended session (the end-to-end run is in tests/e2e/test_verify.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from agentgpt.ipfs.errors import ContentNotFound
from agentgpt.verify import (
    COMPLETED,
    TERMINATED,
    Anchor,
    ChainRecord,
    FinalRecord,
    check_closing,
    commitment,
)

SID, HOME = "7", 31337
CP = "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
LOG = "bafkreidrvhyfxxnu2enshqoiqnvmlp3tnfsyrjxpaiv5rlpw3pxzm5dk7q"
ROOT = b"\x05" * 32
LOG_BYTES = json.dumps({"session_id": SID, "events": [{"cursor": 1}, {"cursor": 2}]}).encode()


class Store:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    async def get(self, cid: str) -> bytes:
        if cid not in self.blobs:
            raise ContentNotFound(f"{cid} is not on the node", cid=cid)
        return self.blobs[cid]


@dataclass
class Tx:
    data: bytes
    tag_map: dict[str, str]


class Arweave:
    def __init__(self, tx: Tx | None) -> None:
        self.tx = tx

    async def read(self, tx_id: str) -> Tx:
        if self.tx is None:
            raise ValueError("signature is invalid")
        return self.tx


def record(*, final: FinalRecord | None = None, ended: int = COMPLETED, reason: int = 1) -> ChainRecord:
    rec = ChainRecord(home_chain_id=HOME, final=final, ended=ended, end_reason=reason)
    rec.anchors[5].append(Anchor(HOME, 5, CP, ROOT, "0xexecutor", 1))
    return rec


def final(seq: int = 5, hashed: bytes | None = None, arweave_tx: str = "tx1") -> FinalRecord:
    return FinalRecord(seq, hashed if hashed is not None else commitment(CP, ROOT), LOG, arweave_tx)


GOOD_TX = Tx(LOG_BYTES, {"Session-Id": SID, "Chain-Id": str(HOME)})


async def test_a_completed_session_closes_with_its_final_anchor_log_and_arweave_copy() -> None:
    out = await check_closing(SID, record(final=final()), 5, Store({LOG: LOG_BYTES}), Arweave(GOOD_TX))
    assert [(f.name, f.ok) for f in out] == [("final anchor", True), ("event log", True), ("arweave", True)]
    assert "2 events" in out[1].detail


@pytest.mark.parametrize(
    ("rec", "ok", "reason"),
    [
        (record(ended=COMPLETED), False, "has no final anchor"),
        (record(ended=TERMINATED, reason=5), False, "is TERMINATED on chain 31337 but has no final anchor"),
        (record(ended=TERMINATED, reason=3), None, "expired (active time ran out)"),
        (record(ended=0), None, "still live"),
    ],
)
async def test_without_a_final_anchor(rec: ChainRecord, ok: bool | None, reason: str) -> None:
    (f,) = await check_closing(SID, rec, 5, Store({}), None)
    assert f.ok is ok and reason in f.detail


async def test_a_final_anchor_that_is_not_the_verified_newest_checkpoint_fails() -> None:
    store = Store({LOG: LOG_BYTES})
    (f,) = await check_closing(SID, record(final=final(seq=4)), 5, store, None)
    assert f.ok is False and "newest anchored is 5" in f.detail
    (f,) = await check_closing(SID, record(final=final(hashed=b"\x01" * 32)), 5, store, None)
    assert f.ok is False and "is not that of checkpoint 5" in f.detail
    (f,) = await check_closing(SID, record(final=final()), 3, store, None)
    assert f.ok is False and "not the one that verifies" in f.detail


async def test_the_archived_log_must_be_on_ipfs_and_belong_to_the_session() -> None:
    out = await check_closing(SID, record(final=final()), 5, Store({}), None)
    assert out[1].ok is False and "cannot be read from IPFS" in out[1].detail
    other = json.dumps({"session_id": "8", "events": []}).encode()
    out = await check_closing(SID, record(final=final()), 5, Store({LOG: other}), None)
    assert out[1].ok is False and "is not the event log of session 7" in out[1].detail


async def test_the_arweave_copy_must_verify_hold_the_same_bytes_and_carry_the_session_tags() -> None:
    store = Store({LOG: LOG_BYTES})
    cases = [
        (Arweave(None), "does not verify: signature is invalid"),
        (Arweave(Tx(LOG_BYTES + b" ", GOOD_TX.tag_map)), "other bytes than the anchored IPFS log"),
        (Arweave(Tx(LOG_BYTES, {"Session-Id": "8", "Chain-Id": str(HOME)})), "tagged Session-Id='8'"),
    ]
    for client, reason in cases:
        out = await check_closing(SID, record(final=final()), 5, store, client)
        assert out[2].ok is False and reason in out[2].detail, reason
    out = await check_closing(SID, record(final=final()), 5, store, None)
    assert out[2].ok is None and "pass an Arweave gateway" in out[2].detail
    out = await check_closing(SID, record(final=final(arweave_tx="")), 5, store, None)
    assert out[2].ok is False and "names no Arweave copy" in out[2].detail

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from agentgpt.tasklog import (
    ZERO_HASH,
    ExecutorKey,
    LogEntry,
    TaskLog,
    TaskLogError,
    verify_chain,
)

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def _log(n: int) -> tuple[TaskLog, list[LogEntry]]:
    log = TaskLog("7", ExecutorKey(KEY))
    entries = [
        log.append(i, "note", "succeeded", {"i": i, "big": 2**70}, context_epoch=1) for i in range(1, n + 1)
    ]
    return log, entries


def test_key_address_matches_eth_account() -> None:
    assert ExecutorKey(KEY).address == Account.from_key(KEY).address


def test_chain_verifies_and_head_is_last_hash() -> None:
    log, entries = _log(5)
    assert verify_chain(entries, ZERO_HASH, log.key.public_key) == log.head == entries[-1].hash
    assert len({e.hash for e in entries}) == 5


def test_tampered_result_is_detected() -> None:
    log, entries = _log(3)
    entries[1] = replace(entries[1], result_hash=b"\x01" * 32)
    with pytest.raises(TaskLogError, match="entry 2's hash"):
        verify_chain(entries, ZERO_HASH, log.key.public_key)


def test_removed_entry_breaks_the_link() -> None:
    log, entries = _log(3)
    with pytest.raises(TaskLogError, match="does not link"):
        verify_chain([entries[0], entries[2]], ZERO_HASH, log.key.public_key)


def test_other_signer_is_detected() -> None:
    _, entries = _log(2)
    other = ExecutorKey("0x" + "22" * 32)
    with pytest.raises(TaskLogError, match="not signed"):
        verify_chain(entries, ZERO_HASH, other.public_key)


def test_signatures_are_low_s_and_roundtrip_cbor() -> None:
    _, entries = _log(20)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    assert all(int.from_bytes(e.signature[32:], "big") <= n // 2 for e in entries)
    again = [LogEntry.from_cbor_obj(e.to_cbor_obj()) for e in entries]
    assert again == entries


def test_seq_must_increase() -> None:
    log, _ = _log(2)
    with pytest.raises(TaskLogError):
        log.append(2, "note", "succeeded", {}, context_epoch=1)


def test_pending_is_taken_once() -> None:
    log, entries = _log(3)
    assert log.take_pending() == entries
    assert log.take_pending() == []


def test_results_with_floats_and_big_ints_have_a_digest() -> None:
    from agentgpt.tasklog import cbor_safe, result_digest

    assert cbor_safe({"price": 3000.5, "wei": 2**80, "t": (1, 2)}) == {
        "price": "3000.5",
        "wei": str(2**80),
        "t": [1, 2],
    }
    assert result_digest({"price": 1.5}) != result_digest({"price": 2.5})

"""`agentgpt up` refuses, before starting anything, to run on service ports another process holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.localnet.anvil import DEV_PRIVATE_KEYS
from apps.localnet.ports import free_port, ports_in_use
from apps.localnet.stack import (
    EXECUTOR_KEYS,
    MAX_EXECUTORS,
    LocalStack,
    StackError,
    StackOptions,
    port_offset,
    service_kind,
    service_names,
)


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_ports_in_use_finds_a_listening_port(listening: int) -> None:
    idle = free_port()
    assert ports_in_use([listening, idle]) == [listening]


def test_a_taken_service_port_stops_the_stack_before_it_starts(tmp_path: Path, listening: int) -> None:
    # The session's gRPC port is taken; the executor's, oracle's and indexer's follow it.
    stack = LocalStack(StackOptions(workdir=tmp_path, base_port=listening, metrics_base=0))
    with pytest.raises(StackError) as err:
        stack.check_ports()
    message = str(err.value)
    assert f"{listening} (session gRPC)" in message and "already in use" in message
    assert "--ports auto" in message
    assert not stack.anvils and not stack.services  # nothing was started


def test_a_taken_metrics_port_is_named_too(tmp_path: Path, listening: int) -> None:
    stack = LocalStack(StackOptions(workdir=tmp_path, base_port=free_port(), metrics_base=listening - 2))
    with pytest.raises(StackError, match=rf"{listening} \(recovery_oracle metrics\)"):
        stack.check_ports()


def test_free_ports_and_auto_ports_pass(tmp_path: Path) -> None:
    LocalStack(StackOptions(workdir=tmp_path, base_port=0)).check_ports()  # --ports auto: nothing fixed
    stack = LocalStack(StackOptions(workdir=tmp_path, base_port=free_port(), metrics_base=0))
    assert stack._port(0, metrics=True) == "0"  # metrics base 0: free ports, not ports 0..3


def test_executors_are_numbered_and_follow_the_four_ports() -> None:
    assert service_names(3) == (
        "session",
        "indexer",
        "recovery_oracle",
        "executor-1",
        "executor-2",
        "executor-3",
    )
    offsets = {name: port_offset(name) for name in service_names(MAX_EXECUTORS)}
    assert offsets == {
        "session": 0,
        "executor-1": 1,
        "recovery_oracle": 2,
        "indexer": 3,
        **{f"executor-{i}": 2 + i for i in range(2, MAX_EXECUTORS + 1)},
    }
    assert {service_kind(n) for n in offsets} == {"session", "executor", "recovery_oracle", "indexer"}
    for unknown in ("executor-0", "executor-x", "executor", "ipfs"):
        with pytest.raises(KeyError):
            port_offset(unknown)


def test_every_executor_has_its_own_spare_dev_key() -> None:
    # 0 deploys (and is the oracle), 2 owns the demo session, 9 issues KYC attestations
    assert EXECUTOR_KEYS == tuple(DEV_PRIVATE_KEYS[i] for i in (1, 3, 4, 5, 6, 7, 8))
    assert MAX_EXECUTORS == len(set(EXECUTOR_KEYS)) == 7
    stack = LocalStack(StackOptions(workdir=Path("."), base_port=0, executors=3))
    assert list(stack.executor_keys) == ["executor-1", "executor-2", "executor-3"]
    assert list(stack.executor_keys.values()) == list(EXECUTOR_KEYS[:3])


@pytest.mark.parametrize("count", [0, -1, MAX_EXECUTORS + 1])
def test_an_executor_count_out_of_range_is_refused(tmp_path: Path, count: int) -> None:
    with pytest.raises(ValueError, match=f"executors {count}: must be between 1 and {MAX_EXECUTORS}"):
        StackOptions(workdir=tmp_path, executors=count)


def test_a_taken_executor_port_is_named(tmp_path: Path, listening: int) -> None:
    # executor-3 is at base + 5: the last of the ports checked for three executors
    stack = LocalStack(StackOptions(workdir=tmp_path, base_port=listening - 5, metrics_base=0, executors=3))
    with pytest.raises(StackError, match=rf"{listening} \(executor-3 gRPC\)"):
        stack.check_ports()
    with_two = LocalStack(
        StackOptions(workdir=tmp_path, base_port=listening - 5, metrics_base=0, executors=2)
    )
    with_two.check_ports()  # base + 5 is no port of a stack with two executors
    metrics = LocalStack(
        StackOptions(workdir=tmp_path, base_port=free_port(), metrics_base=listening - 4, executors=2)
    )
    with pytest.raises(StackError, match=rf"{listening} \(executor-2 metrics\)"):
        metrics.check_ports()

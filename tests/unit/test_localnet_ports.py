"""`agentgpt up` refuses, before starting anything, to run on service ports another process holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.localnet.ports import free_port, ports_in_use
from apps.localnet.stack import LocalStack, StackError, StackOptions


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

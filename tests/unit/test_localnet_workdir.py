"""`agentgpt up` starts fresh chains, so it starts from fresh stores: the previous run's state is moved to
<workdir>/previous (only what a run writes), and one stack at a time owns a work directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.localnet.stack import LocalStack, StackError, StackOptions, reset_workdir

A_RUN = [
    "stack.json",
    "network.json",
    "owner.key",
    "deployment-arbitrum.json",
    "anvil-arbitrum.log",
    "sessions.db",
    "sessions.db-wal",
    "indexer.db",
    "indexer.db-shm",
    "session.log",
    "executor-1.log",
    "executor-2.log",
    "executor-2.ready.json",
    "executor.log",  # a run from before the executors were numbered
    "executor.ready.json",
    "ipfs/repo/config",
    "blocks/ab/cd",
]


def write(workdir: Path, names: list[str], text: str) -> None:
    for name in names:
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_previous_run_is_moved_aside_and_nothing_else(tmp_path: Path) -> None:
    write(tmp_path, A_RUN, "run 1")
    write(tmp_path, ["notes.txt", "mine/sessions.db"], "not the stack's")
    moved = reset_workdir(tmp_path)
    assert "sessions.db" in moved and "ipfs" in moved and "blocks" in moved
    for name in A_RUN:
        assert not (tmp_path / name).exists(), name
        assert (tmp_path / "previous" / name).read_text() == "run 1", name
    assert (tmp_path / "notes.txt").exists() and (tmp_path / "mine" / "sessions.db").exists()

    write(tmp_path, ["sessions.db", "session.log"], "run 2")
    reset_workdir(tmp_path)  # the one before is replaced, not merged
    assert (tmp_path / "previous" / "sessions.db").read_text() == "run 2"
    assert not (tmp_path / "previous" / "network.json").exists()
    assert reset_workdir(tmp_path) == []  # nothing left to move


def test_a_move_cut_short_does_not_get_in_the_way(tmp_path: Path) -> None:
    write(tmp_path, ["previous.new/sessions.db", "previous/indexer.db"], "old")
    write(tmp_path, ["sessions.db"], "killed run")
    assert reset_workdir(tmp_path) == ["sessions.db"]
    assert not (tmp_path / "previous.new").exists()
    assert (tmp_path / "previous" / "sessions.db").read_text() == "killed run"


def test_one_stack_per_workdir(tmp_path: Path) -> None:
    first = LocalStack(StackOptions(workdir=tmp_path, base_port=0))
    first._take_workdir()
    try:
        second = LocalStack(StackOptions(workdir=tmp_path, base_port=0))
        with pytest.raises(StackError, match="another `agentgpt up` is using") as err:
            second._take_workdir()
        assert "--workdir" in str(err.value)
    finally:
        first._release_workdir()
    again = LocalStack(StackOptions(workdir=tmp_path, base_port=0))
    again._take_workdir()  # released: the next run takes it
    again._release_workdir()

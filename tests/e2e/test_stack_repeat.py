"""`agentgpt up` is repeatable in one work directory: every run starts fresh chains and fresh stores (the
previous run's state moved to <workdir>/previous), so each one takes its demo session to COMPLETED, also
after a run stopped by Ctrl-C half-way."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

COMPLETED = "SESSION 1 [COMPLETED]  treasury_management"
UP = [sys.executable, "-m", "apps.cli.main", "up", "--ports", "auto", "--exit-after-demo"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def up_to_the_end(workdir: Path) -> str:
    run = subprocess.run(
        [*UP, "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:]
    assert COMPLETED in run.stdout, run.stdout[-4000:]
    assert not (workdir / "stack.json").exists()
    return run.stdout


def sessions_in(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return [
            (str(sid), tx.hex()) for sid, tx in conn.execute("SELECT session_id, mint_tx_hash FROM sessions")
        ]


def live_members(pgid: int) -> list[str]:
    """Processes (zombies aside) still in process group `pgid`, as "pid command"."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{stat.parent.name} {text[text.index('(') + 1 : text.rindex(')')]}")
    return found


def test_up_twice_in_one_workdir_completes_the_demo_both_times(tmp_path: Path) -> None:
    first = up_to_the_end(tmp_path)
    assert "fresh chains" not in first  # nothing to move aside the first time
    first_sessions = sessions_in(tmp_path / "sessions.db")
    assert [sid for sid, _ in first_sessions] == ["1"]

    second = up_to_the_end(tmp_path)
    assert f"moved to {tmp_path / 'previous'}" in second
    # The new chains' session 1 is its own row: the first run's is in previous/, untouched.
    assert sessions_in(tmp_path / "previous" / "sessions.db") == first_sessions
    now = sessions_in(tmp_path / "sessions.db")
    assert [sid for sid, _ in now] == ["1"] and now != first_sessions
    assert (tmp_path / "previous" / "session.log").exists()  # the last run's logs are kept for a look


def test_up_after_ctrl_c_mid_demo_completes_the_demo(tmp_path: Path) -> None:
    # Ctrl-C in a terminal signals the whole process group: `agentgpt up` and everything it started.
    interrupted = subprocess.Popen(
        [*UP, "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert interrupted.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = interrupted.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "session 1 created" in line:  # minted, not yet activated: SessionDB mid-lifecycle
                break
        assert "session 1 created" in "".join(lines), "".join(lines)
        os.killpg(interrupted.pid, signal.SIGINT)
        rest, _ = interrupted.communicate(timeout=90)
        assert interrupted.returncode == 130, "".join(lines) + rest
        assert "anvil stopped" in rest
        time.sleep(0.5)
        assert live_members(interrupted.pid) == []  # nothing it started is left running
    finally:
        if interrupted.poll() is None:
            os.killpg(interrupted.pid, signal.SIGKILL)
            interrupted.wait()

    again = up_to_the_end(tmp_path)
    assert f"moved to {tmp_path / 'previous'}" in again

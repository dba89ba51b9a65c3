"""The local chain's process: it does not outlive a parent killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]


def test_anvil_does_not_outlive_a_parent_killed_with_sigkill() -> None:
    """A timed-out test or a `kill -9` of `agentgpt up` cannot stop its chains; the watchdog started with
    each anvil does (before it, every such kill left anvils running, re-parented to init)."""
    code = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from apps.localnet.anvil import AnvilNode\n"
        "node = AnvilNode(chain_id=4343).start()\n"
        "print(node.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent did not start anvil: {line!r}"
        pid = int(line)
        assert Path(f"/proc/{pid}").exists()
        os.kill(parent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.2)
    alive = _running(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "anvil outlived its parent by 15 s"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # (a zombie waits for init to reap it: it runs no more)

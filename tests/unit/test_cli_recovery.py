"""`agentgpt recovery list|show`, the recoveries under `agentgpt session inspect`, the executors of
`agentgpt status` and `agentgpt up --executors`: argument handling and output, from protobuf messages the
test builds (the clients' calls are replaced; no service is contacted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from agentgpt.clients import RecoveryClient, SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import RpcError
from agentgpt.recovery.v1 import recovery_pb2 as rc
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.timestamps import to_timestamp
from apps.cli import main as cli
from apps.cli import recovery

T0 = 1_700_000_000.0
OLD = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # executor-1 of the local stack
NEW = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"  # executor-2
NAMES = {OLD.lower(): "executor-1", NEW.lower(): "executor-2"}
ADDR = "127.0.0.1:1"  # never dialled: the calls are replaced


def finished() -> rc.Recovery:
    return rc.Recovery(
        recovery_id="rec-7-1",
        session_id="7",
        status=rc.RECOVERY_STATUS_RESUMED,
        failed_executor=OLD,
        new_executor=NEW,
        checkpoint=cpb.Checkpoint(
            session_id="7",
            seq=3,
            cid="bafyreigood",
            state_root=bytes(range(32)),
            anchors=[cpb.BlockRef(chain_id=31337, number=41), cpb.BlockRef(chain_id=31338, number=17)],
        ),
        reason="lease of executor-1 lapsed",
        started_at=to_timestamp(T0),
        finished_at=to_timestamp(T0 + 4.25),
        steps=[
            rc.RecoveryStep(
                name="pause",
                started_at=to_timestamp(T0),
                finished_at=to_timestamp(T0 + 0.5),
                attempts=1,
                detail="session paused",
            ),
            rc.RecoveryStep(
                name="reassign",
                started_at=to_timestamp(T0 + 0.5),
                finished_at=to_timestamp(T0 + 3.5),
                attempts=2,
                detail="ReassignExecutor tx 0xabc\nconfirmed",
            ),
        ],
        rejected=[
            rc.RejectedCheckpoint(
                checkpoint=cpb.Checkpoint(seq=4, cid="bafyreibad"), reason="state root does not match"
            )
        ],
        holder="recovery-oracle-0",
        fence=2,
        resume_from_seq=4,
    )


def running() -> rc.Recovery:
    return rc.Recovery(
        recovery_id="rec-9-1",
        session_id="9",
        status=rc.RECOVERY_STATUS_VERIFYING,
        failed_executor=NEW,
        handoff=True,
        started_at=to_timestamp(T0),
        steps=[rc.RecoveryStep(name="verify", started_at=to_timestamp(T0 + 1), attempts=1)],
    )


# ------------------------------------------------------------------------------------- formatting
def test_list_is_one_line_per_recovery_under_a_header() -> None:
    lines = recovery.list_lines([finished(), running()], NAMES, now=T0 + 70)
    assert [line.split()[0] for line in lines] == ["RECOVERY", "rec-7-1", "rec-9-1"]
    header, done, busy = lines
    assert header.split("  ")[0] == "RECOVERY" and header.endswith("DURATION")
    assert done.split() == [
        "rec-7-1",
        "7",
        "RESUMED",
        "executor-1",
        "→",
        "executor-2",
        "seq",
        "3",
        "4.2",
        "s",
    ]
    assert busy.split() == [
        *["rec-9-1", "9", "VERIFYING", "(handoff)", "executor-2", "→", "-", "-"],
        *["1", "min", "10", "s", "so", "far"],
    ]
    # columns line up
    assert len({line.index("→") for line in lines[1:]}) == 1
    assert recovery.list_lines([], NAMES) == []


def test_an_executor_the_stack_does_not_know_is_its_short_address() -> None:
    (line,) = recovery.list_lines([finished()], {})[1:]
    assert "0x7099…79C8 → 0x90F7…b906" in line
    assert recovery.executor_label("executor-5", {}) == "executor-5"  # not an address: as it is


def test_show_prints_every_field_each_step_and_the_rejected_checkpoints() -> None:
    lines = recovery.show_lines(finished(), NAMES)
    text = "\n".join(lines)
    assert lines[0] == "RECOVERY rec-7-1  session 7  RESUMED"
    fields = {line[2:19].strip(): line[20:] for line in lines[1:] if line.startswith("  ") and line[2] != " "}
    assert fields["kind"].startswith("failure")
    assert fields["reason"] == "lease of executor-1 lapsed"
    assert fields["failed executor"] == f"{OLD} (executor-1)"
    assert fields["new executor"] == f"{NEW} (executor-2)"
    assert fields["checkpoint"] == "seq 3  bafyreigood"
    assert fields["state root"] == "0x" + bytes(range(32)).hex()
    assert fields["anchored on"] == "chain 31337 block 41, chain 31338 block 17"
    assert fields["resumes at"] == "task seq 4"
    assert fields["started"] == "2023-11-14 22:13:20.000 UTC"
    assert fields["finished"] == "2023-11-14 22:13:24.250 UTC (took 4.2 s)"
    assert fields["oracle replica"] == "recovery-oracle-0, fence 2"
    steps = lines[lines.index("Steps") + 1 : lines.index("Rejected checkpoints")]
    assert [s.split()[:3] for s in steps] == [
        ["STEP", "ATTEMPTS", "DURATION"],
        ["pause", "1", "0.5"],
        ["reassign", "2", "3.0"],
    ]
    assert steps[2].endswith("ReassignExecutor tx 0xabc confirmed")  # one line
    assert lines[lines.index("Rejected checkpoints") + 1 :] == [
        "  seq 4  bafyreibad: state root does not match"
    ]
    assert "\n\n" not in text


def test_show_of_a_running_handoff_says_what_is_not_there_yet() -> None:
    lines = recovery.show_lines(running(), NAMES, now=T0 + 12)
    assert lines[0] == "RECOVERY rec-9-1  session 9  VERIFYING (handoff)"
    text = "\n".join(lines)
    assert "handoff (the executor released the session gracefully: no pause)" in text
    assert "  new executor      -" in text and "  checkpoint        (none yet)" in text
    assert "  finished          running (12.0 s so far)" in text
    assert "  verify  1         11.0 s so far" in text
    assert lines[-2:] == ["Rejected checkpoints", "  (none)"]


def test_show_prints_a_field_newer_than_the_cli_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "SHOWN", recovery.SHOWN - {"fence", "resume_from_seq"})
    lines = recovery.show_lines(finished(), NAMES)
    assert "  fence             2" in lines and "  resume from seq   4" in lines
    assert "  finished          -" in recovery.show_lines(rc.Recovery(recovery_id="r", session_id="1"))


def test_durations_read_like_a_person_would_say_them() -> None:
    assert [recovery.duration(s) for s in (0.04, 12, 59.94, 61, 3600 + 600 + 5, -3)] == [
        "0.0 s",
        "12.0 s",
        "59.9 s",
        "1 min 1 s",
        "1 h 10 min",
        "0.0 s",
    ]
    assert recovery.took(rc.Recovery()) == "-"


# --------------------------------------------------------------------------- the commands, faked
@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch) -> list[rc.ListRecoveriesRequest]:
    """RecoveryClient.list_recoveries answering with finished() and running(), filtered like the
    oracle would; the requests it got."""
    seen: list[rc.ListRecoveriesRequest] = []

    async def list_recoveries(self: Any, req: rc.ListRecoveriesRequest) -> rc.ListRecoveriesResponse:
        seen.append(req)
        found = [
            r
            for r in (finished(), running())
            if (not req.session_id or r.session_id == req.session_id)
            and (not req.recovery_id or r.recovery_id == req.recovery_id)
        ]
        return rc.ListRecoveriesResponse(recoveries=found)

    monkeypatch.setattr(RecoveryClient, "list_recoveries", list_recoveries)
    monkeypatch.delenv(recovery.ENV_ADDR, raising=False)
    return seen


def refusing(monkeypatch: pytest.MonkeyPatch, code: grpc.StatusCode, details: str) -> None:
    async def list_recoveries(self: Any, req: Any) -> Any:
        raise RpcError(RecoveryClient.service, "ListRecoveries", code, details)

    monkeypatch.setattr(RecoveryClient, "list_recoveries", list_recoveries)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def write_stack(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    state = {
        "services": {
            "session": {"grpc": "127.0.0.1:2", "metrics_port": 1, "pid": 11},
            "recovery_oracle": {"grpc": ADDR, "metrics_port": 2, "pid": 12},
        },
        "executor_address": OLD,
        "executors": [
            {"id": "executor-1", "address": OLD, "grpc": "127.0.0.1:3", "pid": 13, "log": "x"},
            {"id": "executor-2", "address": NEW, "grpc": "127.0.0.1:4", "pid": 14, "log": "y"},
        ],
    }
    (workdir / "stack.json").write_text(json.dumps(state))
    return workdir


def test_recovery_list_asks_the_stacks_oracle_and_names_its_executors(
    oracle: list[rc.ListRecoveriesRequest], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    workdir = write_stack(tmp_path / "stack")
    code, out, err = run(["recovery", "list", "--workdir", str(workdir)], capsys)
    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()] == ["RECOVERY", "rec-7-1", "rec-9-1"]
    assert "executor-1 → executor-2" in out
    assert oracle[-1].session_id == "" and oracle[-1].page.page_size == 50

    code, out, _ = run(
        ["recovery", "list", "--session", "0x7", "--limit", "5", "--workdir", str(workdir)], capsys
    )
    assert code == 0 and oracle[-1].session_id == "7" and oracle[-1].page.page_size == 5
    assert [line.split()[0] for line in out.splitlines()] == ["RECOVERY", "rec-7-1"]

    code, out, _ = run(["recovery", "list", "--session", "8", "--recovery-addr", ADDR], capsys)
    assert (code, out) == (0, "no recoveries of session 8\n")

    code, out, _ = run(["recovery", "list", "--json", "--recovery-addr", ADDR], capsys)
    assert code == 0
    listed = json.loads(out)["recoveries"]
    assert [r["recoveryId"] for r in listed] == ["rec-7-1", "rec-9-1"]
    assert listed[0]["steps"][1]["attempts"] == 2 and listed[0]["resumeFromSeq"] == "4"


def test_recovery_show_prints_one_recovery(
    oracle: list[rc.ListRecoveriesRequest], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    workdir = write_stack(tmp_path / "stack")
    code, out, err = run(["recovery", "show", "rec-7-1", "--workdir", str(workdir)], capsys)
    assert (code, err) == (0, "")
    assert oracle[-1].recovery_id == "rec-7-1"
    assert out.splitlines() == recovery.show_lines(finished(), NAMES)

    code, out, _ = run(["recovery", "show", "rec-9-1", "--json", "--recovery-addr", ADDR], capsys)
    assert code == 0 and json.loads(out)["handoff"] is True

    code, out, err = run(["recovery", "show", "rec-nope", "--recovery-addr", ADDR], capsys)
    assert (code, out) == (1, "")
    assert err == f"error: NOT_FOUND: the recovery oracle at {ADDR} has no recovery 'rec-nope'\n"


def test_an_oracle_without_list_recoveries_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refusing(monkeypatch, grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    for argv in (["recovery", "list"], ["recovery", "show", "rec-1"]):
        code, out, err = run([*argv, "--recovery-addr", ADDR], capsys)
        assert (code, out) == (1, "")
        assert err == f"error: the recovery oracle does not list recoveries (UNIMPLEMENTED) at {ADDR}\n"


def test_an_unreachable_oracle_is_named_with_its_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refusing(monkeypatch, grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    code, _, err = run(["recovery", "list", "--recovery-addr", ADDR], capsys)
    assert code == 1
    assert err.startswith(f"error: UNAVAILABLE: cannot reach the recovery oracle at {ADDR} (")
    assert "--recovery-addr HOST:PORT" in err and err.count("\n") == 1


def test_the_oracle_address_comes_from_the_option_then_the_environment_then_the_stack(
    oracle: list[rc.ListRecoveriesRequest],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    targets: list[str] = []
    real_init = RecoveryClient.__init__

    def init(self: Any, target: str, *args: Any, **kwargs: Any) -> None:
        targets.append(target)
        real_init(self, target, *args, **kwargs)

    monkeypatch.setattr(RecoveryClient, "__init__", init)
    workdir = write_stack(tmp_path / "stack")
    monkeypatch.setenv(recovery.ENV_ADDR, "127.0.0.1:5")
    run(["recovery", "list", "--workdir", str(workdir), "--recovery-addr", "127.0.0.1:6"], capsys)
    run(["recovery", "list", "--workdir", str(workdir)], capsys)
    monkeypatch.delenv(recovery.ENV_ADDR)
    run(["recovery", "list", "--workdir", str(workdir)], capsys)
    assert targets == ["127.0.0.1:6", "127.0.0.1:5", ADDR]

    code, out, err = run(["recovery", "list", "--workdir", str(tmp_path / "none")], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: no running stack found (") and "--recovery-addr HOST:PORT" in err
    (tmp_path / "no-oracle").mkdir()
    (tmp_path / "no-oracle" / "stack.json").write_text('{"services": {}}')
    code, _, err = run(["recovery", "list", "--workdir", str(tmp_path / "no-oracle")], capsys)
    assert code == 2 and "names no recovery oracle" in err


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["recovery", "list", "--session", "abc"], "error: session id 'abc'"),
        (["recovery", "list", "--session", "-1"], "error: session id '-1'"),
        (["recovery", "list", "--limit", "0"], "error: --limit 0: must be between 1 and 500"),
        (["recovery", "list", "--limit", "501"], "error: --limit 501: must be between 1 and 500"),
        (["recovery", "show", " "], "error: RECOVERY_ID: is empty"),
        (["recovery", "show", "r" * 300], "error: RECOVERY_ID: is 300 characters"),
    ],
)
def test_bad_recovery_arguments_exit_2_before_any_call(
    oracle: list[rc.ListRecoveriesRequest], capsys: pytest.CaptureFixture[str], argv: list[str], expect: str
) -> None:
    code, out, err = run([*argv, "--recovery-addr", ADDR], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(expect) and err.count("\n") == 1, err
    assert oracle == []


@pytest.mark.parametrize("argv", [["recovery"], ["recovery", "frobnicate"], ["recovery", "show"]])
def test_recovery_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2 and "usage: agentgpt recovery" in err


def test_recovery_help_names_both_actions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["recovery", "--help"], capsys)
    assert code == 0
    assert "agentgpt recovery list [--session ID]" in out and "agentgpt recovery show RECOVERY_ID" in out
    assert "--recovery-addr HOST:PORT" in out and "$AGENTGPT_RECOVERY_ADDR" in out


# ------------------------------------------------------------------------- session inspect
@pytest.fixture
def inspected(monkeypatch: pytest.MonkeyPatch) -> None:
    async def inspect_session(
        self: Any, session_id: str, detail: str = "summary"
    ) -> ss.InspectSessionResponse:
        return ss.InspectSessionResponse(
            session=ss.Session(
                session_id=session_id, state=cpb.SESSION_STATE_ACTIVE, budget="0", budget_spent="0"
            )
        )

    monkeypatch.setattr(SessionClient, "inspect_session", inspect_session)


def test_inspect_lists_the_sessions_recoveries(
    inspected: None,
    oracle: list[rc.ListRecoveriesRequest],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    workdir = write_stack(tmp_path / "stack")
    code, out, err = run(["session", "inspect", "7", "--workdir", str(workdir)], capsys)
    assert (code, err) == (0, "")
    assert oracle[-1].session_id == "7"
    tail = out.splitlines()[out.splitlines().index("Recoveries") :]
    assert [line.split()[0] for line in tail] == ["Recoveries", "RECOVERY", "rec-7-1"]
    assert "executor-1 → executor-2" in tail[2]

    code, out, _ = run(["session", "inspect", "9", "--workdir", str(workdir)], capsys)
    assert code == 0 and out.splitlines()[-1].split()[:4] == ["rec-9-1", "9", "VERIFYING", "(handoff)"]
    code, out, _ = run(["session", "inspect", "8", "--workdir", str(workdir)], capsys)
    assert code == 0 and out.splitlines()[-2:] == ["Recoveries", "  none"]
    code, out, _ = run(["session", "inspect", "8", "--workdir", str(workdir), "--json"], capsys)
    assert code == 0 and json.loads(out)["session"]["sessionId"] == "8"  # JSON stays the response


@pytest.mark.parametrize(
    ("code", "details", "line"),
    [
        (
            grpc.StatusCode.UNIMPLEMENTED,
            "Method not found!",
            "  the recovery oracle does not list recoveries (UNIMPLEMENTED)",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect\nto all addresses",
            f"  the recovery oracle at {ADDR} did not answer (UNAVAILABLE: failed to connect to all addresses)",
        ),
    ],
)
def test_inspect_with_an_oracle_that_cannot_list_says_so_in_one_line(
    inspected: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    code: grpc.StatusCode,
    details: str,
    line: str,
) -> None:
    refusing(monkeypatch, code, details)
    workdir = write_stack(tmp_path / "stack")
    status, out, err = run(["session", "inspect", "7", "--workdir", str(workdir)], capsys)
    assert (status, err) == (0, "")
    assert out.splitlines()[-2:] == ["Recoveries", line]


def test_inspect_without_an_oracle_address_still_shows_the_dashboard(
    inspected: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv(recovery.ENV_ADDR, raising=False)
    code, out, err = run(
        ["session", "inspect", "7", "--session-addr", "127.0.0.1:2", "--workdir", str(tmp_path / "none")],
        capsys,
    )
    assert (code, err) == (0, "")
    assert "SESSION 7 [ACTIVE]" in out
    assert out.splitlines()[-2:] == [
        "Recoveries",
        "  not looked up: no recovery oracle address (pass --recovery-addr HOST:PORT or set AGENTGPT_RECOVERY_ADDR)",
    ]


# ---------------------------------------------------------------------------- status, up --executors
def test_status_shows_each_executors_pid_and_sessions() -> None:
    state = json.loads(
        json.dumps(
            {"executors": [{"id": "executor-1", "address": OLD}, {"id": "executor-2", "address": NEW}]}
        )
    )
    rows = [
        {"service": "session", "status": "SERVING", "grpc": "127.0.0.1:2", "pid": 11},
        {
            "service": "executor-1",
            "pid": 13,
            "executor": {
                "answering": True,
                "executor_id": "executor-1",
                "address": OLD,
                "capacity": 8,
                "draining": False,
                "sessions": [{"session_id": "7", "epoch": 2, "last_task_seq": 3, "last_checkpoint_seq": 3}],
            },
        },
        {
            "service": "executor-2",
            "pid": 14,
            "executor": {"answering": False, "code": "UNAVAILABLE", "error": "connection refused"},
        },
    ]
    lines = cli.executor_lines(rows, state)
    assert lines[0].split() == ["EXECUTOR", "PID", "ADDRESS", "SESSIONS", "HELD"]
    assert lines[1].split() == [
        "executor-1",
        "13",
        OLD,
        "7",
        "(epoch",
        "2,",
        "last",
        "task",
        "3,",
        "checkpoint",
        "3)",
    ]
    assert lines[2].split() == ["executor-2", "14", NEW, "not", "answering", "(UNAVAILABLE)"]
    assert len(lines) == 3  # the session service is no executor


def test_the_cli_knows_how_many_executors_the_stack_can_run() -> None:
    from apps.localnet import stack

    assert cli.MAX_EXECUTORS == stack.MAX_EXECUTORS and cli.DEFAULT_EXECUTORS == stack.DEFAULT_EXECUTORS
    assert cli.build_parser().parse_args(["up"]).executors == 2
    assert cli.build_parser().parse_args(["up", "--executors", "7"]).executors == 7


@pytest.mark.parametrize("value", ["0", "8", "abc", "-1", "2.5", ""])
def test_up_refuses_an_executor_count_it_cannot_run(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["up", "--executors", value, "--workdir", "/nonexistent/never-started"], capsys)
    assert (code, out) == (2, "")
    assert f"argument --executors: {value!r}: pass a whole number of executors from 1 to 7" in err


def test_up_keeps_every_executor_port_in_range(capsys: pytest.CaptureFixture[str]) -> None:
    # seven executors: the last is at base + 9
    code, _, err = run(["up", "--executors", "7", "--ports", "65530", "--workdir", "/nonexistent/x"], capsys)
    assert code == 2 and err.startswith("error: --ports 65530: must be between 1 and 65526")

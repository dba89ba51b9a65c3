"""Every bad input to the `agentgpt` CLI ends in one `error: ...` line on stderr and an exit code:
2 for the command line (checked before any service is contacted), 1 for a service's refusal or a
service that cannot be reached; never a traceback. Piping into `| head` ends quietly.

The CLI runs as a subprocess with an environment of its own: no AGENTGPT_* settings from the caller,
and a work directory holding no stack. Service answers come from a small in-process fake of the
session service, so no stack is needed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.session.v1 import session_pb2_grpc as ss_grpc

REPO = Path(__file__).resolve().parents[2]
# anvil's second well-known dev key: a valid key that controls nothing here
OWNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
UINT256_MAX = 2**256 - 1
MANY_SESSIONS = 3000  # `session list` output well beyond a pipe's buffer

GOOD_SPEC = """\
type: treasury_management
params:
  chains: [arbitrum]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeSessionService(ss_grpc.SessionServiceServicer):
    """Answers like the session service would: a long list, and refusals with a status."""

    def ListSessions(self, request: Any, context: Any) -> ss.ListSessionsResponse:
        return ss.ListSessionsResponse(
            sessions=[
                ss.Session(session_id=str(i), budget="100", budget_spent="0") for i in range(MANY_SESSIONS)
            ]
        )

    def PauseSession(self, request: Any, context: Any) -> ss.PauseSessionResponse:
        context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"session {request.session_id} is COMPLETED; pause needs an ACTIVE session",
        )
        raise AssertionError("unreachable")

    def GetSession(self, request: Any, context: Any) -> ss.GetSessionResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, f"session {request.session_id} does not exist")
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def fake_service() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ss_grpc.add_SessionServiceServicer_to_server(FakeSessionService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every bad (and one good) input file the cases refer to as {tmp}/NAME."""
    d = tmp_path_factory.mktemp("cli-inputs")
    closed = _free_port()  # nothing listens there
    (d / "good.yaml").write_text(GOOD_SPEC)
    (d / "unclosed.yaml").write_text("type: [treasury_management\nparams: {chains: [arbitrum]}\n")
    (d / "list.yaml").write_text("- type: treasury_management\n- params: {}\n")
    (d / "empty.yaml").write_text("")
    (d / "no-type.yaml").write_text("params:\n  chains: [arbitrum]\n")
    (d / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (d / "deep.yaml").write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    (d / "a-directory").mkdir()
    (d / "key-empty").write_text("")
    (d / "key-garbage").write_text("correct horse battery staple\n")
    (d / "key-short").write_text("0x1234\n")
    (d / "key-good").write_text(OWNER_KEY + "\n")
    chain = {
        "name": "arbitrum",
        "chain_id": 31337,
        "rpc_url": f"http://127.0.0.1:{closed}",
        "contracts": {"SessionFactory": "0x" + "11" * 20, "AGPT": "0x" + "22" * 20},
    }
    (d / "network.json").write_text(json.dumps({"chains": [chain]}))
    (d / "network-not-json").write_text("chains:\n  - name: [unclosed\n")
    (d / "network-no-chains.json").write_text('{"chains": []}')
    (d / "network-no-contracts.json").write_text(json.dumps({"chains": [{**chain, "contracts": {}}]}))
    (d / "network-list.json").write_text("[1, 2]")
    (d / "params-bad.json").write_text('{"max_base_fee_gwei": 50')
    (d / "params-list.json").write_text("[1, 2, 3]")
    (d / "params-nan.json").write_text('{"max_base_fee_gwei": NaN}')
    (d / "params-deep.json").write_text("[" * 200000 + "]" * 200000)
    (d / "params-binary.json").write_bytes(b"\xff\xfe{\x00}\x00")
    (d / "closed-port").write_text(str(closed))
    return d


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], files: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """`agentgpt ARGS` with {tmp} replaced by the inputs directory, in an environment without any
    AGENTGPT_* setting of the caller's and without a local stack."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGPT_")}
    base["PYTHONPATH"] = str(REPO)
    argv = [a.replace("{tmp}", str(files)) for a in args]
    extra = {k: v.replace("{tmp}", str(files)) for k, v in (env or {}).items()}
    proc = subprocess.run(
        [sys.executable, "-m", "apps.cli.main", *argv],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env={**base, **extra},
        cwd=files,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_clean(result: Result) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, stream
        assert "Exception ignored" not in stream, stream


NO_STACK = ["--workdir", "{tmp}/no-stack-here"]
OWNER_ENV = {"AGENTGPT_OWNER_KEY": OWNER_KEY, "AGENTGPT_NETWORK": "{tmp}/network.json"}


def session(*args: str) -> list[str]:
    return ["session", *args, *NO_STACK]


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    expect: str  # stderr must start with `error: ` and contain this
    env: dict[str, str] = field(default_factory=lambda: dict(OWNER_ENV))
    code: int = 2


SESSION_IDS = [
    "0x3a7d...",
    "-1",
    "abc",
    "0",
    "1.5",
    "0x",
    "",
    " 7",
    "٣",  # a digit, but not an ASCII one
    str(UINT256_MAX + 1),
    "9" * 78,
    "9" * 5000,
    "0x1" + "0" * 64,
]
ON_A_SESSION = [
    ["edit-params", "{id}", "{}"],
    ["attach", "{id}", "ofac_filter"],
    ["activate", "{id}", "--executor", "0x" + "33" * 20],
    ["add-budget", "{id}", "--amount", "1"],
    ["submit", "{id}", "publish_report"],
    ["pause", "{id}"],
    ["resume", "{id}"],
    ["complete", "{id}"],
    ["terminate", "{id}"],
    ["inspect", "{id}"],
    ["get", "{id}"],
    ["tasks", "{id}"],
    ["watch", "{id}"],
]


def _session_id_cases() -> list[Case]:
    """Every bad id on one owner action and one read; one bad id on every action taking an id."""
    pause, inspect = ON_A_SESSION[5], ON_A_SESSION[9]
    pairs = [(sid, action) for sid in SESSION_IDS for action in (pause, inspect)]
    pairs += [("0x3a7d...", action) for action in ON_A_SESSION if action not in (pause, inspect)]
    cases = []
    for sid, action in pairs:
        args = [a.replace("{id}", sid) for a in action]
        cases.append(Case(f"{action[0]}-id-{sid[:12]!r}", session(*args), "session id " + repr(sid)[:40]))
    return cases


CASES = [
    # spec files
    Case(
        "spec-unclosed-bracket",
        session("create", "unclosed.yaml", "--budget", "1"),
        "unclosed.yaml: is not valid YAML",
    ),
    Case("spec-a-list", session("create", "list.yaml", "--budget", "1"), "list.yaml: must be a YAML mapping"),
    Case(
        "spec-empty", session("create", "empty.yaml", "--budget", "1"), "empty.yaml: must be a YAML mapping"
    ),
    Case("spec-without-type", session("create", "no-type.yaml", "--budget", "1"), "no-type.yaml: type"),
    Case("spec-binary", session("create", "binary.yaml", "--budget", "1"), "binary.yaml: is not UTF-8 text"),
    Case(
        "spec-nested-deeply",
        session("create", "deep.yaml", "--budget", "1"),
        "deep.yaml: is nested too deeply",
    ),
    Case(
        "spec-missing", session("create", "nope.yaml", "--budget", "1"), "spec file nope.yaml: no such file"
    ),
    Case(
        "spec-a-directory",
        session("create", "a-directory", "--budget", "1"),
        "spec file a-directory: is a directory",
    ),
    Case("spec-no-name", session("create", "", "--budget", "1"), "spec file: no file name given"),
    # budgets and amounts (AGPT, 18 decimals; base units must fit the escrow's uint96)
    *[
        Case(f"budget-{b!r}", session("create", "good.yaml", f"--budget={b}"), f"--budget {b!r}")
        for b in [
            "1e60",
            "-3",
            "0",
            "-0",
            "NaN",
            "sNaN",
            "Infinity",
            "-inf",
            "abc",
            "",
            "1e-19",
            "0.0000000000000000001",
            "1e999999999",
            str(UINT256_MAX),
            "79228162514.264337593543950336",  # one base unit over 2**96-1
        ]
    ],
    Case("amount-too-large", session("add-budget", "1", "--amount", "1e11"), "--amount '1e11': too large"),
    Case("amount-negative", session("add-budget", "1", "--amount", "-1"), "--amount '-1'"),
    Case("amount-nan", session("add-budget", "1", "--amount", "nan"), "--amount 'nan'"),
    Case("amount-not-a-number", session("add-budget", "1", "--amount", "abc"), "--amount 'abc'"),
    # session ids on every action that takes one
    *_session_id_cases(),
    # owner key material
    Case(
        "key-env-short",
        session("pause", "1"),
        "$AGENTGPT_OWNER_KEY does not hold a private key",
        {**OWNER_ENV, "AGENTGPT_OWNER_KEY": "0x1234"},
    ),
    Case(
        "key-env-garbage",
        session("pause", "1"),
        "$AGENTGPT_OWNER_KEY does not hold a private key",
        {**OWNER_ENV, "AGENTGPT_OWNER_KEY": "not a key"},
    ),
    Case(
        "key-env-empty",
        session("pause", "1"),
        "$AGENTGPT_OWNER_KEY is empty",
        {**OWNER_ENV, "AGENTGPT_OWNER_KEY": ""},
    ),
    Case(
        "key-env-zero",
        session("pause", "1"),
        "not a valid secp256k1 private key",
        {**OWNER_ENV, "AGENTGPT_OWNER_KEY": "0x" + "00" * 32},
    ),
    Case(
        "key-env-beyond-the-curve-order",
        session("pause", "1"),
        "not a valid secp256k1 private key",
        {**OWNER_ENV, "AGENTGPT_OWNER_KEY": "0x" + "ff" * 32},
    ),
    Case(
        "key-file-missing",
        session("pause", "1", "--owner-key-file", "nope.key"),
        "--owner-key-file nope.key: no such file",
    ),
    Case(
        "key-file-empty",
        session("pause", "1", "--owner-key-file", "key-empty"),
        "--owner-key-file key-empty is empty",
    ),
    Case(
        "key-file-garbage",
        session("pause", "1", "--owner-key-file", "key-garbage"),
        "--owner-key-file key-garbage does not hold a private key",
    ),
    Case(
        "key-file-short",
        session("pause", "1", "--owner-key-file", "key-short"),
        "--owner-key-file key-short does not hold a private key",
    ),
    Case(
        "key-file-binary",
        session("pause", "1", "--owner-key-file", "binary.yaml"),
        "--owner-key-file binary.yaml: is not UTF-8 text",
    ),
    Case(
        "key-file-a-directory",
        session("pause", "1", "--owner-key-file", "a-directory"),
        "--owner-key-file a-directory: is a directory",
    ),
    Case(
        "no-key-at-all",
        session("pause", "1"),
        "no owner key: pass --owner-key-file FILE or set AGENTGPT_OWNER_KEY",
        {"AGENTGPT_NETWORK": "{tmp}/network.json"},
    ),
    # network manifests
    Case(
        "network-missing",
        session("pause", "1", "--network", "nope.json"),
        "--network nope.json: no such file",
    ),
    Case(
        "network-a-directory",
        session("pause", "1", "--network", "a-directory"),
        "--network a-directory: is a directory",
    ),
    Case(
        "network-not-json",
        session("pause", "1", "--network", "network-not-json"),
        "--network network-not-json: not JSON",
    ),
    Case(
        "network-binary",
        session("pause", "1", "--network", "binary.yaml"),
        "--network binary.yaml: is not UTF-8 text",
    ),
    Case(
        "network-a-list",
        session("pause", "1", "--network", "network-list.json"),
        "--network network-list.json: is not a valid network manifest",
    ),
    Case(
        "network-no-chains", session("pause", "1", "--network", "network-no-chains.json"), "lists no chains"
    ),
    Case(
        "network-no-contracts",
        session("pause", "1", "--network", "network-no-contracts.json"),
        "has no valid SessionFactory address",
    ),
    Case(
        "network-env-missing",
        session("pause", "1"),
        "$AGENTGPT_NETWORK {tmp}/nope.json: no such file",
        {**OWNER_ENV, "AGENTGPT_NETWORK": "{tmp}/nope.json"},
    ),
    Case(
        "network-none",
        session("pause", "1"),
        "no network manifest: pass --network FILE",
        {"AGENTGPT_OWNER_KEY": OWNER_KEY},
    ),
    # task arguments and params
    Case(
        "args-a-list",
        session("submit", "1", "publish_report", "--args", "[1]"),
        "--args: must be a JSON object",
    ),
    Case(
        "args-a-string",
        session("submit", "1", "publish_report", "--args", '"weekly"'),
        "--args: must be a JSON object",
    ),
    Case(
        "args-not-json",
        session("submit", "1", "publish_report", "--args", "{title: weekly}"),
        "--args: not JSON",
    ),
    Case("args-empty", session("submit", "1", "publish_report", "--args", ""), "--args: not JSON"),
    Case(
        "args-nan",
        session("submit", "1", "publish_report", "--args", '{"x": NaN}'),
        "--args: NaN is not a JSON number",
    ),
    Case(
        "args-infinity",
        session("submit", "1", "publish_report", "--args", '{"x": Infinity}'),
        "--args: Infinity is not a JSON number",
    ),
    Case(
        "args-minus-infinity",
        session("submit", "1", "publish_report", "--args", '{"x": -Infinity}'),
        "--args: -Infinity",
    ),
    Case(
        "args-overflowing-float",
        session("submit", "1", "publish_report", "--args", '{"x": 1e400}'),
        "--args: 1e400 is not a JSON number",
    ),
    Case(
        "args-lone-surrogate",
        session("submit", "1", "publish_report", "--args", '{"title":"\\ud800"}'),
        "--args: holds a string that is not valid Unicode",
    ),
    Case(
        "args-lone-surrogate-key",
        session("submit", "1", "publish_report", "--args", '{"\\udfff": 1}'),
        "--args: holds a string that is not valid Unicode",
    ),
    Case(
        "args-too-large",
        session("submit", "1", "publish_report", "--args", json.dumps({"x": "y" * 70000})),
        "--args: is larger than 65536 bytes",
    ),
    Case(
        "args-file-missing",
        session("submit", "1", "publish_report", "--args", "@nope.json"),
        "--args file nope.json: no such file",
    ),
    Case(
        "params-file-missing",
        session("edit-params", "1", "@nope.json"),
        "params file nope.json: no such file",
    ),
    Case(
        "params-file-a-directory",
        session("edit-params", "1", "@a-directory"),
        "params file a-directory: is a directory",
    ),
    Case("params-file-no-name", session("edit-params", "1", "@"), "params file: no file name given"),
    Case(
        "params-file-invalid",
        session("edit-params", "1", "@params-bad.json"),
        "params file params-bad.json: not JSON",
    ),
    Case(
        "params-file-a-list",
        session("edit-params", "1", "@params-list.json"),
        "params file params-list.json: must be a JSON object",
    ),
    Case(
        "params-file-nan",
        session("edit-params", "1", "@params-nan.json"),
        "params file params-nan.json: NaN is not a JSON number",
    ),
    Case(
        "params-file-binary",
        session("edit-params", "1", "@params-binary.json"),
        "params file params-binary.json: is not UTF-8 text",
    ),
    Case(
        "params-file-nested-deeply",
        session("edit-params", "1", "@params-deep.json"),
        "params file params-deep.json: is nested too deeply",
    ),
    Case("params-inline-not-an-object", session("edit-params", "1", "[]"), "params: must be a JSON object"),
    # other values the service would refuse, refused before sending
    Case("task-kind", session("submit", "1", "Publish-Report"), "task kind 'Publish-Report'"),
    Case("decorator-name", session("attach", "1", "ofac_filter", "KYC!"), "decorator 'KYC!'"),
    Case("reason-empty", session("pause", "1", "--reason", " "), "--reason: must not be empty"),
    Case("reason-too-long", session("terminate", "1", "--reason", "x" * 300), "--reason: is 300 characters"),
    Case("executor-address", session("activate", "1", "--executor", "0x12"), "--executor '0x12'"),
    Case(
        "attestation-half",
        session("activate", "1", "--attestation-quote", "binary.yaml"),
        "--attestation-quote and --attestation-collateral go together",
    ),
    Case(
        "attestation-no-quote-file",
        session("activate", "1", "--attestation-quote", "nope.bin", "--attestation-collateral", "good.yaml"),
        "--attestation-quote nope.bin: no such file",
    ),
    Case(
        "attestation-empty-quote",
        session(
            "activate", "1", "--attestation-quote", "empty.yaml", "--attestation-collateral", "good.yaml"
        ),
        "--attestation-quote empty.yaml: is empty",
    ),
    Case(
        "attestation-collateral-not-an-object",
        session(
            "activate",
            "1",
            "--attestation-quote",
            "binary.yaml",
            "--attestation-collateral",
            "params-list.json",
        ),
        "--attestation-collateral: must be a JSON object",
    ),
    Case("list-owner", session("list", "--owner", "alice"), "--owner 'alice'"),
    Case("list-limit", session("list", "--limit", "0"), "--limit 0: must be between 1 and 500"),
    Case("tasks-after", session("tasks", "1", "--after", "-1"), "--after -1"),
    Case("tasks-limit", session("tasks", "1", "--limit", "5000"), "--limit 5000"),
    Case("watch-cursor", session("watch", "1", "--from-cursor", str(2**64)), "--from-cursor"),
    Case("status-timeout", ["status", "--timeout", "nan", *NO_STACK], "--timeout nan"),
    Case("up-ports", ["up", "--ports", "fifty", *NO_STACK], "--ports 'fifty'"),
    Case("up-ttl", ["up", "--draft-ttl", "-1", *NO_STACK], "--draft-ttl -1"),
    # a corrupt local stack state
    Case(
        "stack-state-not-json",
        ["session", "list", "--workdir", "{tmp}/corrupt-stack"],
        "--workdir: {tmp}/corrupt-stack/stack.json is not valid JSON",
    ),
    # the local stack's dev-owner key, unreadable
    Case(
        "stack-owner-key-garbage",
        ["session", "pause", "1", "--workdir", "{tmp}/garbage-key-stack"],
        "the local stack's owner key {tmp}/key-garbage does not hold a private key",
        {},
    ),
]


@pytest.fixture(scope="module")
def stacks(files: Path) -> Path:
    corrupt = files / "corrupt-stack"
    corrupt.mkdir()
    (corrupt / "stack.json").write_text('{"services": ')
    garbage = files / "garbage-key-stack"
    garbage.mkdir()
    (garbage / "stack.json").write_text(
        json.dumps(
            {
                "network": str(files / "network.json"),
                "owner_key_file": str(files / "key-garbage"),
                "services": {"session": {"grpc": "127.0.0.1:1", "metrics_port": 0}},
            }
        )
    )
    return files


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_one_error_line_and_exit_2(case: Case, files: Path, stacks: Path) -> None:
    result = run_cli(case.args, files, case.env)
    assert_clean(result)
    assert result.code == case.code, result
    assert result.stderr.startswith("error: "), result
    assert result.stderr.count("\n") == 1, result  # one line
    assert case.expect.replace("{tmp}", str(files)) in result.stderr, result
    assert result.stdout == ""


def test_undecodable_bytes_in_an_option_are_refused(files: Path) -> None:
    """Bytes the locale cannot decode arrive as lone surrogates (surrogateescape)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGPT_")}
    env.update(OWNER_ENV)
    env["AGENTGPT_NETWORK"] = str(files / "network.json")
    for option, value in (("--reason", b"closed \xff today"), ("--args", b'{"title": "\xff"}')):
        args = [b"pause", b"1"] if option == "--reason" else [b"submit", b"1", b"publish_report"]
        proc = subprocess.run(
            [sys.executable.encode(), b"-m", b"apps.cli.main", b"session", *args, option.encode(), value],
            capture_output=True,
            timeout=60,
            env={**env, "PYTHONPATH": str(REPO)},
            cwd=files,
        )
        stderr = proc.stderr.decode(errors="replace")
        assert proc.returncode == 2, stderr
        assert stderr.startswith(f"error: {option}: is not valid UTF-8 text") and "Traceback" not in stderr


def test_argparse_usage_errors_still_exit_2(files: Path) -> None:
    for args in (
        ["session", "pause"],
        ["session", "frobnicate"],
        ["nonsense"],
        ["session", "list", "--limit", "x"],
    ):
        result = run_cli(args, files)
        assert_clean(result)
        assert result.code == 2, result
        assert result.stderr.startswith("usage: ") and "error: " in result.stderr


def test_amounts_convert_exactly_to_base_units() -> None:
    from apps.cli.owner import agpt_units

    assert agpt_units("100") == 100 * 10**18
    assert agpt_units("0.5") == 5 * 10**17
    assert agpt_units("1e-18") == 1
    # more digits than Decimal's default precision (28): no rounding
    assert agpt_units("12345678901.123456789012345678") == 12345678901123456789012345678
    largest = "79228162514.264337593543950335"
    assert agpt_units(largest) == 2**96 - 1


def test_session_ids_are_normalised_to_the_decimal_token_id() -> None:
    from apps.cli.owner import session_id

    assert session_id("7") == "7"
    assert session_id("007") == "7"
    assert session_id("0x2a") == session_id("0X2A") == "42"
    assert session_id(str(UINT256_MAX)) == session_id("0x" + "f" * 64) == str(UINT256_MAX)


def test_the_key_range_is_secp256k1s() -> None:
    from eth_keys.constants import SECPK1_N

    from apps.cli.owner import SECP256K1_N, private_key

    assert SECP256K1_N == SECPK1_N
    assert private_key(OWNER_KEY[2:] + "\n", "k") == OWNER_KEY


# ------------------------------------------------------------------ the services' answers: exit 1
def test_a_refusal_prints_the_status_and_exits_1(files: Path, fake_service: str) -> None:
    result = run_cli(session("pause", "7", "--session-addr", fake_service), files, OWNER_ENV)
    assert_clean(result)
    assert result.code == 1, result
    assert (
        result.stderr == "error: FAILED_PRECONDITION: session 7 is COMPLETED; pause needs an ACTIVE session\n"
    )


def test_an_in_range_id_that_does_not_exist_is_the_services_answer(files: Path, fake_service: str) -> None:
    sid = "9" * 77  # < 2**256-1: a valid id, so the service answers
    result = run_cli(session("get", sid, "--session-addr", fake_service), files)
    assert_clean(result)
    assert result.code == 1, result
    assert result.stderr == f"error: NOT_FOUND: session {sid} does not exist\n"
    hex_form = run_cli(session("get", "0x2A", "--session-addr", fake_service), files)
    assert hex_form.stderr == "error: NOT_FOUND: session 42 does not exist\n"


@pytest.mark.parametrize(
    "args",
    [session("inspect", "1"), session("list"), session("pause", "1"), session("watch", "1")],
    ids=["inspect", "list", "pause", "watch"],
)
def test_an_unreachable_service_is_named_with_its_address(files: Path, args: list[str]) -> None:
    addr = f"127.0.0.1:{(files / 'closed-port').read_text()}"
    result = run_cli([*args, "--session-addr", addr], files, OWNER_ENV)
    assert_clean(result)
    assert result.code == 1, result
    assert result.stderr.startswith(f"error: UNAVAILABLE: cannot reach the session service at {addr}"), result
    assert result.stderr.count("\n") == 1


def test_an_unreachable_chain_is_named_with_its_url(files: Path, fake_service: str) -> None:
    url = f"http://127.0.0.1:{(files / 'closed-port').read_text()}"
    result = run_cli(
        session("create", "good.yaml", "--budget", "1", "--session-addr", fake_service), files, OWNER_ENV
    )
    assert_clean(result)
    assert result.code == 1, result
    assert result.stderr.startswith(f"error: cannot reach the home chain arbitrum at {url}"), result


@pytest.mark.parametrize("args", [["status"], ["session", "list"], ["session", "inspect", "1"]])
def test_no_local_stack_says_how_to_start_one(files: Path, args: list[str]) -> None:
    result = run_cli([*args, *NO_STACK], files)
    assert_clean(result)
    assert result.code == 1, result
    assert result.stderr.startswith("error: no running stack found (") and "agentgpt up" in result.stderr


# ------------------------------------------------------------------------------ internal errors
def test_an_internal_error_is_one_line_and_the_traceback_only_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from apps.cli import main as cli

    def broken(args: Any) -> int:
        raise RuntimeError("the config tables are gone")

    monkeypatch.setattr(cli, "_config", broken)
    monkeypatch.delenv("AGENTGPT_DEBUG", raising=False)
    assert cli.main(["config"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: internal error: RuntimeError: the config tables are gone")
    assert "Traceback" not in err and err.count("\n") == 1 and out == ""

    for argv, env in ((["config", "--debug"], None), (["--debug", "config"], None), (["config"], "1")):
        if env:
            monkeypatch.setenv("AGENTGPT_DEBUG", env)
        assert cli.main(argv) == 1
        _, err = capsys.readouterr()
        assert err.startswith("Traceback") and "RuntimeError: the config tables are gone" in err
        assert err.splitlines()[-1].startswith("error: internal error: RuntimeError")


# ----------------------------------------------------------------------------------- broken pipes
def _closed_pipe_run(args: list[str], files: Path) -> subprocess.CompletedProcess[bytes]:
    """The CLI writing into a pipe whose reader is already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "apps.cli.main", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("AGENTGPT_")},
                "PYTHONPATH": str(REPO),
            },
            cwd=files,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [["config"], ["--help"], ["session", "--help"], ["session", "list", "--session-addr", "{addr}"]],
    ids=["config", "help", "session-help", "session-list"],
)
def test_a_reader_that_went_away_ends_the_command_quietly(
    args: list[str], files: Path, fake_service: str
) -> None:
    argv = [a.replace("{addr}", fake_service) for a in args]
    proc = _closed_pipe_run(argv, files)
    assert proc.stderr == b"", proc.stderr.decode(errors="replace")
    if "--help" in args:  # argparse ignores a failed write of its help text itself: exit 0
        assert proc.returncode in (0, 141)
    else:
        assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports a command stopped by it


@pytest.mark.parametrize(
    "args",
    [["config"], ["session", "list", "--session-addr", "{addr}"]],
    ids=["config", "session-list"],
)
def test_piping_into_head_reads_one_line_and_ends_quietly(
    args: list[str], files: Path, fake_service: str
) -> None:
    """`agentgpt ... | head -1`: the reader closes its end after one line."""
    argv = [a.replace("{addr}", fake_service) for a in args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AGENTGPT_")},
            "PYTHONPATH": str(REPO),
        },
        cwd=files,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.stderr.close()
    code = proc.wait(timeout=60)
    assert first.endswith(b"\n")
    assert stderr == b"", stderr.decode(errors="replace")
    # a short output may be written in full before the reader closes (exit 0)
    assert code in (0, 141)
    if args[0] == "session":  # far more than a pipe holds: the write after the close fails
        assert code == 141


def test_machine_readable_output_and_the_version(files: Path, fake_service: str) -> None:
    """Operators' scripts: `--json` on list and config is one JSON document; `--version` names it."""
    listed = run_cli(session("list", "--json", "--session-addr", fake_service), files)
    assert listed.code == 0, listed.stderr
    assert len(json.loads(listed.stdout)["sessions"]) == MANY_SESSIONS
    config = run_cli(["config", "--json"], files)
    rows = json.loads(config.stdout)
    assert config.code == 0 and {"service", "variable", "default", "meaning"} == set(rows[0])
    assert any(r["variable"] == "AGENTGPT_METADATA_INTERVAL" and r["service"] == "session" for r in rows)
    version = run_cli(["--version"], files)
    assert version.code == 0 and version.stdout.startswith("agentgpt ")

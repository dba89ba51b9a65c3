"""Property-based tests of the CLI's argument handling: random argv lists (every command but `up`, which
starts a stack; options in and out of place; odd Unicode, lone surrogates as undecodable argv bytes
arrive, huge and negative numbers; malformed spec, key, network and params files) run in-process through
`apps.cli.main.main` with no services and no local stack.

Every run ends with exit code 0 (only for --help, --version and `config`), 2 for a usage error, or 1 for
the CLI's documented failures (a service or chain that cannot be reached); a failure prints an
`error: ...` line on stderr, and never a traceback or an "internal error" (which would be a bug).
(tests/unit/test_cli_errors.py checks the exact messages of known bad inputs as a subprocess.)"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import eth_account  # noqa: F401  (py_ecc raises the recursion limit on import: before hypothesis runs, not during)
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apps.cli import main as cli

OWNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil's 2nd dev key
COMMANDS = [
    ["status"],
    ["config"],
    ["verify"],
    ["recovery", "list"],
    ["recovery", "show"],
    *(
        ["session", action]
        for action in (
            "inspect get list tasks watch restore create edit-params attach activate submit add-budget "
            "pause resume complete terminate export"
        ).split()
    ),
]
OPTIONS = [
    "--json",
    "--debug",
    "--detail",
    "--limit",
    "--after",
    "--state",
    "--status",
    "--owner",
    "--from-cursor",
    "--history-only",
    "--budget",
    "--amount",
    "--executor",
    "--args",
    "--reason",
    "--timeout",
    "--session",
    "--markdown",
    "--owner-key-file",
    "--network",
    "--workdir",
    "--session-addr",
    "--recovery-addr",
    "--out",
    "-h",
    "--",
    "-",
]
ODD_VALUES = [
    "",
    " ",
    "7",
    "0",
    "-1",
    "0x",
    "0x3a7d",
    "1.5",
    "1e309",
    "nan",
    "inf",
    "-0",
    "٣",
    "7\x00",
    "\ud800",  # what an undecodable argv byte becomes (surrogateescape)
    "\udcff\udcfe",
    "\u202e7",
    "\U0001f600",
    "9" * 78,
    "9" * 5000,
    str(2**256),
    str(-(2**255)),
    "0x" + "f" * 65,
    "0x" + "33" * 20,
    "@",
    "@{tmp}/missing.json",
    "@{tmp}/params-binary.json",
    "@{tmp}/params-deep.json",
    "{}",
    "[]",
    '{"a": NaN}',
    '{"a": 1e400}',
    "summary",
    "full",
    "active",
    "queued",
    "ofac_filter",
    "publish_report",
    "{tmp}/closed",
    "127.0.0.1:0",
    "[::1]:99999",
    "host:port:extra",
]
FILES = [
    "{tmp}/good.yaml",
    "{tmp}/binary.yaml",
    "{tmp}/surrogate.yaml",
    "{tmp}/huge-int.yaml",
    "{tmp}/deep.yaml",
    "{tmp}/empty.yaml",
    "{tmp}/missing.yaml",
    "{tmp}/a-directory",
    "{tmp}/key-good",
    "{tmp}/key-garbage",
    "{tmp}/key-huge",
    "{tmp}/network.json",
    "{tmp}/network-garbage.json",
    "{tmp}/network-huge.json",
    "/dev/null",
]
TOKENS = st.one_of(
    st.sampled_from(OPTIONS),
    st.sampled_from(ODD_VALUES),
    st.sampled_from(FILES),
    st.text(st.characters(codec=None, categories=None), max_size=12),
    st.integers().map(str),
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-fuzz")
    closed = _closed_port()
    (d / "good.yaml").write_text("type: treasury_management\nparams:\n  chains: [arbitrum]\n")
    (d / "binary.yaml").write_bytes(bytes(range(256)) * 2)
    (d / "surrogate.yaml").write_bytes(b"type: \xed\xa0\x80\nparams: {chains: [a]}\n")  # UTF-8 of U+D800
    (d / "huge-int.yaml").write_text("type: t\nchains: [a]\ncheckpoint_interval: " + "9" * 5000 + "\n")
    (d / "deep.yaml").write_text("a: " + "[" * 300 + "]" * 300 + "\n")
    (d / "empty.yaml").write_text("")
    (d / "a-directory").mkdir()
    (d / "key-good").write_text(OWNER_KEY + "\n")
    (d / "key-garbage").write_bytes(b"\xff\xfe correct horse\n")
    (d / "key-huge").write_text("0x" + "f" * 64 + "\n")  # beyond the curve order
    chain = {
        "name": "arbitrum",
        "chain_id": 31337,
        "rpc_url": f"http://127.0.0.1:{closed}",
        "contracts": {"SessionFactory": "0x" + "11" * 20, "AGPT": "0x" + "22" * 20},
    }
    (d / "network.json").write_text(json.dumps({"chains": [chain]}))
    (d / "network-garbage.json").write_text('{"chains": [{"name": ')
    (d / "network-huge.json").write_text('{"chains": [{"name": "a", "chain_id": ' + "9" * 5000 + "}]}")
    (d / "params-binary.json").write_bytes(b"\xff\xfe{\x00}\x00")
    (d / "params-deep.json").write_text("[" * 5000 + "]" * 5000)
    (d / "closed").write_text(str(closed))
    return d


def _run(argv: list[str], inputs: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = [a.replace("{tmp}", str(inputs)) for a in argv]
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _check(argv: list[str], code: int, out: str, err: str) -> None:
    for stream in (out, err):
        assert "Traceback" not in stream, (argv, stream)
        assert "Exception ignored" not in stream, (argv, stream)
    assert "internal error" not in err, (argv, err)
    if code == 0:
        asked_for_text = {"-h", "--help", "--version"} & set(argv) or argv[:1] == ["config"]
        assert asked_for_text, f"{argv} succeeded with no services: {out[:200]!r}"
        return
    assert code in (1, 2), (argv, code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, f"{argv}: exit {code} with nothing on stderr"
    assert any(line.startswith("error: ") or ": error: " in line for line in lines), (argv, err)


@pytest.fixture
def no_stack(inputs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AGENTGPT_* settings from the caller, and a work directory with no local stack in it."""
    for name in list(os.environ):
        if name.startswith("AGENTGPT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AGENTGPT_OWNER_KEY_FILE", str(inputs / "key-good"))
    monkeypatch.setenv("AGENTGPT_NETWORK", str(inputs / "network.json"))
    monkeypatch.chdir(inputs)
    return inputs


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(COMMANDS),
    before=st.lists(TOKENS, max_size=2),
    after=st.lists(TOKENS, max_size=6),
)
@example(command=["session", "create"], before=[], after=["{tmp}/surrogate.yaml", "--budget", "1"])
@example(command=["session", "create"], before=[], after=["{tmp}/huge-int.yaml", "--budget", "1"])
@example(command=["session", "create"], before=[], after=["{tmp}/good.yaml", "--budget", "9" * 5000])
@example(command=["session", "get"], before=[], after=["\ud800"])
@example(command=["session", "list"], before=[], after=["--limit", "9" * 5000])
@example(command=["session", "edit-params"], before=[], after=["7", "@{tmp}/params-deep.json"])
@example(command=["status"], before=[], after=["--timeout", "nan"])
@example(command=["verify"], before=[], after=["7", "--network", "{tmp}/network-huge.json"])
def test_random_argv_exits_cleanly(
    no_stack: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    before: list[str],
    after: list[str],
) -> None:
    argv = [*before, *command, *after]
    code, out, err = _run(argv, no_stack, capsys)
    _check(argv, code, out, err)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(argv=st.lists(TOKENS, max_size=6))
def test_random_argv_without_a_command_exits_cleanly(
    no_stack: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    if "up" in argv:  # `up` starts a stack: the fuzzed commands never include it
        argv = [a for a in argv if a != "up"]
    code, out, err = _run(argv, no_stack, capsys)
    _check(argv, code, out, err)


def test_a_usage_error_is_exit_2_with_the_option_named(
    no_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        ["session", "list", "--limit", "9" * 5000, "--workdir", "{tmp}/none"], no_stack, capsys
    )
    assert code == 2 and "--limit" in err and "error: " in err

"""`agentgpt session create|edit-params|attach|activate|submit|add-budget|pause|resume|complete|terminate`:
the owner's commands, and the command-line checks every `agentgpt session` command shares.

Every request is signed with the owner's key (see `agentgpt.owner`), so the owner needs no ETH. The
key comes from --owner-key-file, else $AGENTGPT_OWNER_KEY, else the local stack's dev owner
(`<workdir>/owner.key`, written by `agentgpt up`). The home chain (for the signatures' nonces) comes
from --network, else $AGENTGPT_NETWORK, else the local stack's network manifest.

Every value from the command line, the environment or a file is checked here before anything is
sent: a bad one raises UsageError (exit 2) naming the option or file and what to pass instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

ACTIONS = (
    "create",
    "edit-params",
    "attach",
    "activate",
    "submit",
    "add-budget",
    "pause",
    "resume",
    "complete",
    "terminate",
)
AGPT_DECIMALS = 18
AGPT = Decimal(10**AGPT_DECIMALS)
UINT256_MAX = 2**256 - 1
# What one session's escrow can hold: SessionFactory keeps budgets as uint96 (AmountTooLarge beyond).
ESCROW_MAX = 2**96 - 1
INT64_MAX = 2**63 - 1
# secp256k1's group order: a private key is an integer in 1 .. N-1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_JSON_BYTES = 65536  # what the session service accepts for params_json / args_json
MAX_FILE_BYTES = 1 << 20
MAX_REASON = 256  # characters, as the session service

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NAME = re.compile(r"[a-z0-9_]{1,64}")
_KEY = re.compile(r"(?:0[xX])?([0-9a-fA-F]{64})")


class UsageError(Exception):
    """Bad command-line input or missing local configuration; the message says what to do (exit 2)."""


class CommandFailed(Exception):
    """The input was fine but the command could not be carried out: a service refused it or could
    not be reached (exit 1). The message names the service or address."""


def shown(text: str, limit: int = 80) -> str:
    """`text` quoted for an error message, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def add_actions(add_action: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register the owner's actions on the `agentgpt session` parser."""

    def owner_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--owner-key-file",
            default="",
            help="file holding the owner's private key (hex); default: $AGENTGPT_OWNER_KEY, else the "
            "local stack's dev owner (<workdir>/owner.key)",
        )
        p.add_argument(
            "--network",
            default="",
            help="network manifest naming the home chain; default: $AGENTGPT_NETWORK, else the local stack's",
        )
        p.add_argument("--json", action="store_true", help="print the service's answer as JSON")

    create = add_action("create", "create a session from a spec YAML (DRAFT; mints its NFT)")
    create.add_argument("spec", help="the session spec, YAML (the seed's section 6 form)")
    create.add_argument(
        "--budget",
        required=True,
        help="initial budget in AGPT (e.g. 100 or 0.5), moved from the owner by permit",
    )

    def on_session(name: str, help: str) -> argparse.ArgumentParser:
        parser = add_action(name, help)
        parser.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
        return parser

    activate = on_session("activate", "commit workflow, executor and allowlist on chain (DRAFT -> ACTIVE)")
    activate.add_argument(
        "--executor", default="", help="the executor's address; default: the local stack's executor"
    )
    activate.add_argument(
        "--attestation-quote",
        default="",
        metavar="FILE",
        help="the executor's Intel DCAP quote (binary, as its GetExecutorStatus gives it): for a spec whose "
        "attestation block requires one (docs/attestation.md)",
    )
    activate.add_argument(
        "--attestation-collateral",
        default="",
        metavar="FILE",
        help="the quote's collateral (JSON) to verify it against; goes with --attestation-quote",
    )
    submit = on_session("submit", "append a task to an ACTIVE session's queue")
    submit.add_argument("kind", help="task kind, e.g. analyze_market, rebalance, publish_report")
    submit.add_argument("--args", default="{}", help='task arguments as a JSON object (default: "{}")')
    pause = on_session("pause", "pause an ACTIVE session (its ACTIVE clock stops)")
    resume = on_session("resume", "resume a PAUSED session")
    for parser, verb in ((pause, "paused"), (resume, "resumed")):
        parser.add_argument(
            "--reason", default=f"{verb} by the owner from the CLI", help="recorded with the transition"
        )
    complete = on_session("complete", "complete an ACTIVE session (event log archived to IPFS, NFT burned)")
    edit = on_session("edit-params", "replace a DRAFT session's params")
    edit.add_argument("params", help="the new params: a JSON object, or @FILE holding one")
    attach = on_session("attach", "attach compliance decorators to a DRAFT session")
    attach.add_argument(
        "decorators", nargs="+", help="decorator names, e.g. kyc_tier4 ofac_filter gas_optimizer_v3"
    )
    add_budget = on_session("add-budget", "add AGPT to an ACTIVE session's budget (moved by permit)")
    add_budget.add_argument("--amount", required=True, help="AGPT to add (e.g. 25 or 0.5)")
    terminate = on_session("terminate", "end a session for good (any state but the final ones)")
    terminate.add_argument(
        "--reason", default="terminated by the owner from the CLI", help="recorded with the transition"
    )
    for p in (create, edit, attach, activate, submit, add_budget, pause, resume, complete, terminate):
        owner_options(p)


# ---------------------------------------------------------------------------------- input checks
def read_binary_file(path: str, what: str, limit: int) -> bytes:
    """The bytes of the file at `path` (1..`limit`); `what` names it in errors."""
    data = _read_file(path, what, limit)
    if not data:
        raise UsageError(f"{what} {path}: is empty")
    return data


def read_text_file(path: str, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of the file at `path`; `what` names it in errors ("spec file", "--network")."""
    data = _read_file(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path}: is not UTF-8 text (a binary file?)") from None


def _read_file(path: str, what: str, limit: int) -> bytes:
    if not path:
        raise UsageError(f"{what}: no file name given; pass the path of a file")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path}: is a directory; pass the path of a file") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise UsageError(f"{what} {path}: is larger than {limit} bytes")
    return data


def session_id(text: str) -> str:
    """A session id from the command line as the decimal token id the API takes: the decimal id, or
    the seed's 0x-prefixed hex form, in 1 .. 2**256-1."""
    hex_form = text[:2] in ("0x", "0X")
    digits = text[2:] if hex_form else text
    alphabet = "0123456789abcdefABCDEF" if hex_form else "0123456789"
    if not digits or any(c not in alphabet for c in digits):
        raise UsageError(
            f"session id {shown(text)}: not a session id; pass the session's decimal token id "
            "(e.g. 2, as `agentgpt session list` shows it) or its 0x-prefixed hex form"
        )
    significant = digits.lstrip("0")
    if len(significant) > (64 if hex_form else 78):
        n = UINT256_MAX + 1
    else:
        n = int(significant or "0", 16 if hex_form else 10)
    if not 1 <= n <= UINT256_MAX:
        raise UsageError(f"session id {shown(text)}: out of range; session ids are 1 .. 2**256-1")
    return str(n)


def agpt_units(text: str, option: str = "--budget") -> int:
    """AGPT amount ("100", "0.5") -> base units (18 decimals), checked to fit the session escrow (uint96)."""
    try:
        amount = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        raise UsageError(f"{option} {shown(text)}: not a number of AGPT; pass e.g. 100 or 0.5") from None
    if not amount.is_finite() or amount <= 0:
        raise UsageError(
            f"{option} {shown(text)}: must be a positive amount with at most 18 decimals (e.g. 100 or 0.5)"
        )
    too_large = UsageError(
        f"{option} {shown(text)}: too large; a session's escrow holds at most 2**96-1 base units "
        f"(x 10**18), about {Decimal(ESCROW_MAX) / AGPT:,.0f} AGPT"
    )
    if amount.adjusted() > 80:  # far beyond a uint256; spare the exact arithmetic below
        raise too_large
    with localcontext() as ctx:
        ctx.prec = 200  # exact: 80 integer digits + 18 decimals, with room to spare
        units = amount.scaleb(AGPT_DECIMALS)
        if units != units.to_integral_value():
            raise UsageError(
                f"{option} {shown(text)}: must be a positive amount with at most 18 decimals "
                "(e.g. 100 or 0.5)"
            )
    n = int(units)
    if n > ESCROW_MAX:
        raise too_large
    return n


@contextlib.contextmanager
def _parse_depth_limit(limit: int = 2000) -> Iterator[None]:
    """Parsers recurse per nesting level. py_ecc (imported with eth_account) raises the recursion
    limit to 100000, where a deeply nested document overflows the C stack instead of raising
    RecursionError; parse under Python's usual kind of limit so nesting ends in a clean error."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(min(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _check_text(value: Any, where: str) -> None:
    """Every string (keys too) in a parsed JSON value must be valid Unicode (no lone surrogates)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(
                    f"{where}: holds a string that is not valid Unicode (a lone surrogate such as "
                    "\\ud800); use valid UTF-8 text"
                ) from None


def json_object(text: str, what: str) -> dict[str, Any]:
    """`text` (or the file named by @FILE) parsed as a JSON object: valid UTF-8, no NaN/Infinity."""
    where = what
    if text.startswith("@"):
        where = f"{what} file {text[1:]}"
        text = read_text_file(text[1:], f"{what} file")
    example = 'e.g. \'{"title": "weekly"}\'' if what == "--args" else "e.g. '{\"max_base_fee_gwei\": 50}'"
    try:
        with _parse_depth_limit():
            value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite as exc:
        raise UsageError(f"{where}: {exc} is not a JSON number; use a finite number or a string") from None
    except RecursionError:
        raise UsageError(f"{where}: is nested too deeply") from None
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON ({exc}); pass a JSON object, {example}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{where}: must be a JSON object, {example}")
    _check_text(value, where)
    if len(json.dumps(value).encode()) > MAX_JSON_BYTES:
        raise UsageError(f"{where}: is larger than {MAX_JSON_BYTES} bytes")
    return value


def name(text: str, what: str, example: str) -> str:
    """A task kind or decorator name: [a-z0-9_]{1,64}, as the session service takes it."""
    if not _NAME.fullmatch(text):
        raise UsageError(f"{what} {shown(text)}: must be 1-64 characters of a-z, 0-9 and _ (e.g. {example})")
    return text


def reason(text: str) -> str:
    if not text.strip():
        raise UsageError("--reason: must not be empty; say why (it is recorded with the transition)")
    if len(text) > MAX_REASON:
        raise UsageError(f"--reason: is {len(text)} characters; the limit is {MAX_REASON}")
    return text


def address(text: str, option: str) -> str:
    if not _ADDRESS.fullmatch(text):
        raise UsageError(
            f"{option} {shown(text)}: must be a 0x-prefixed 20-byte hex address (0x + 40 hex digits)"
        )
    return text


def private_key(text: str, source: str) -> str:
    """The owner's private key from `source` (never echoed back: it is a secret)."""
    match = _KEY.fullmatch(text.strip())
    if not text.strip():
        raise UsageError(
            f"{source} is empty; it must hold the owner's private key (0x followed by 64 hex digits)"
        )
    if not match:
        raise UsageError(f"{source} does not hold a private key; expected 0x followed by 64 hex digits")
    if not 0 < int(match.group(1), 16) < SECP256K1_N:
        raise UsageError(f"{source} is not a valid secp256k1 private key (out of range)")
    return "0x" + match.group(1)


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Every value of an owner action, checked (and converted) before anything is read or sent."""
    values: dict[str, Any] = {}
    if getattr(args, "id", None) is not None:
        values["id"] = session_id(args.id)
    if args.action == "create":
        values["spec_yaml"] = read_text_file(args.spec, "spec file")
        _check_spec(values["spec_yaml"], args.spec)
        values["budget"] = agpt_units(args.budget, "--budget")
    elif args.action == "activate":
        if args.executor:
            values["executor"] = address(args.executor, "--executor")
        if bool(args.attestation_quote) != bool(args.attestation_collateral):
            raise UsageError(
                "--attestation-quote and --attestation-collateral go together; give both or neither"
            )
        if args.attestation_quote:
            from agentgpt.attestation import MAX_QUOTE_BYTES

            values["quote"] = read_binary_file(args.attestation_quote, "--attestation-quote", MAX_QUOTE_BYTES)
            collateral = read_text_file(args.attestation_collateral, "--attestation-collateral")
            json_object(collateral, "--attestation-collateral")
            values["collateral"] = collateral
    elif args.action == "submit":
        values["task"] = (name(args.kind, "task kind", "publish_report"), json_object(args.args, "--args"))
    elif args.action in ("pause", "resume", "terminate"):
        values["reason"] = reason(args.reason)
    elif args.action == "edit-params":
        values["params"] = json_object(args.params, "params")
    elif args.action == "attach":
        if len(args.decorators) > 32:
            raise UsageError(f"attach: {len(args.decorators)} decorators; at most 32 at a time")
        values["decorators"] = [name(d, "decorator", "ofac_filter") for d in args.decorators]
    elif args.action == "add-budget":
        values["amount"] = agpt_units(args.amount, "--amount")
    return values


def _check_spec(spec_yaml: str, path: str) -> None:
    from agentgpt.errors import InvalidArgument
    from agentgpt.spec import parse_yaml

    try:
        with _parse_depth_limit():
            parse_yaml(spec_yaml, "spec")
    except InvalidArgument as exc:
        problem = exc.message.removeprefix("spec: ").removeprefix("spec.")
        raise UsageError(f"spec file {path}: {problem}") from None


# ----------------------------------------------------------------------- local configuration
def stack_state(workdir: str) -> dict[str, Any]:
    """The local stack's state (`<workdir>/stack.json`), or {} when no stack was started there."""
    path = Path(workdir) / "stack.json"
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise UsageError(
            f"--workdir: {path} cannot be read ({exc.strerror or exc}); pass the work directory of "
            "a stack started with `agentgpt up`, or --session-addr"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(
            f"--workdir: {path} is not valid JSON ({exc}); restart the stack with `agentgpt up`, "
            "or pass --session-addr"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"--workdir: {path} is not a stack state file; restart the stack with `agentgpt up`")
    return data


def _stack_state(args: argparse.Namespace) -> dict[str, Any]:
    return stack_state(args.workdir)


def owner_key(args: argparse.Namespace) -> str:
    if args.owner_key_file:
        text = read_text_file(args.owner_key_file, "--owner-key-file", limit=4096)
        return private_key(text, f"--owner-key-file {args.owner_key_file}")
    if "AGENTGPT_OWNER_KEY" in os.environ:
        return private_key(os.environ["AGENTGPT_OWNER_KEY"], "$AGENTGPT_OWNER_KEY")
    local = _stack_state(args).get("owner_key_file")
    if local and Path(str(local)).exists():
        text = read_text_file(str(local), "the local stack's owner key", limit=4096)
        return private_key(text, f"the local stack's owner key {local}")
    raise UsageError(
        "no owner key: pass --owner-key-file FILE or set AGENTGPT_OWNER_KEY "
        "(against a local stack started with `agentgpt up`, its dev owner's key is used)"
    )


def network_path(args: argparse.Namespace) -> str:
    path = args.network or os.environ.get("AGENTGPT_NETWORK") or _stack_state(args).get("network", "")
    if not path:
        raise UsageError("no network manifest: pass --network FILE or set AGENTGPT_NETWORK")
    return str(path)


def home_chain(args: argparse.Namespace) -> Any:
    """The home chain of the network manifest, checked to name what the owner's signatures need."""
    from agentgpt.network import load_network
    from agentgpt.runtime.config import ConfigError

    path = network_path(args)
    if args.network:
        label = "--network"
    elif os.environ.get("AGENTGPT_NETWORK"):
        label = "$AGENTGPT_NETWORK"
    else:
        label = "the local stack's network manifest"
    source = f"{label} {path}"
    hint = "a network manifest is the JSON file `agentgpt up` writes (<workdir>/network.json)"
    try:
        with _parse_depth_limit():
            json.loads(read_text_file(path, label))
    except RecursionError:
        raise UsageError(f"{source}: is nested too deeply; {hint}") from None
    except ValueError as exc:
        raise UsageError(f"{source}: not JSON ({exc}); {hint}") from None
    try:
        network = load_network(path)
    except (ConfigError, OSError) as exc:
        detail = str(exc).removeprefix("AGENTGPT_NETWORK: ").removeprefix(f"{path} ")
        raise UsageError(f"{source}: {detail}; {hint}") from None
    if not network.chains:
        raise UsageError(f"{source}: lists no chains; {hint}")
    home = network.home
    if not home.rpc_url.startswith(("http://", "https://")):
        raise UsageError(f"{source}: chain {home.name}: rpc_url {shown(home.rpc_url)} is not an http(s) URL")
    for contract in ("SessionFactory", "AGPT"):
        if not _ADDRESS.fullmatch(str(home.contracts.get(contract, ""))):
            raise UsageError(
                f"{source}: chain {home.name} has no valid {contract} address in its contracts; {hint}"
            )
    return home


# ------------------------------------------------------------------------------------ the actions
async def run(args: argparse.Namespace, target: Callable[[], str]) -> int:
    """Run one owner action against the session service at `target()`; print the outcome.

    Every input is checked first (UsageError), then the key, the network and the service address."""
    values = check(args)
    key = owner_key(args)
    home = home_chain(args)
    if args.action == "activate" and "executor" not in values:
        executor = str(_stack_state(args).get("executor_address", ""))
        if not executor:
            raise UsageError("--executor ADDRESS is required (no local stack to take it from)")
        values["executor"] = address(executor, "the local stack's executor_address")
    addr = target()

    # only now the libraries that talk to the service and the chain (slow to import)
    import aiohttp
    from google.protobuf import json_format
    from google.protobuf.message import Message
    from web3.exceptions import Web3Exception

    from agentgpt.clients import SessionClient
    from agentgpt.common.v1 import common_pb2
    from agentgpt.owner import SessionOwner

    async with SessionClient(addr) as client:
        owner = SessionOwner(key, home, client)
        sid = values.get("id", "")
        try:
            answer: Message
            if args.action == "create":
                answer = session = await owner.create(values["spec_yaml"], values["budget"])
                line = f"session {session.session_id} created (DRAFT), NFT minted; owner {owner.address}"
            elif args.action == "activate":
                answer = session = await owner.activate(
                    sid,
                    values["executor"],
                    attestation_quote=values.get("quote", b""),
                    attestation_collateral_json=values.get("collateral", ""),
                )
                line = f"session {session.session_id} ACTIVE, executor {session.executor}"
            elif args.action == "submit":
                answer = submitted = await owner.submit(sid, [values["task"]])
                seqs = ", ".join(str(seq) for seq in submitted.task_seqs)
                line = f"session {sid}: task {args.kind} queued as seq {seqs}"
            elif args.action in ("pause", "resume", "terminate"):
                act = {"pause": owner.pause, "resume": owner.resume, "terminate": owner.terminate}[
                    args.action
                ]
                answer = session = await act(sid, values["reason"])
                state = common_pb2.SessionState.Name(session.state).removeprefix("SESSION_STATE_")
                line = f"session {session.session_id} {state}: {session.state_reason}"
            elif args.action == "edit-params":
                answer = session = await owner.edit_params(sid, values["params"])
                line = f"session {session.session_id} params replaced (version {session.version})"
            elif args.action == "attach":
                answer = session = await owner.attach_decorators(sid, values["decorators"])
                line = f"session {session.session_id} decorators: {', '.join(session.spec.decorators)}"
            elif args.action == "add-budget":
                answer = session = await owner.update_budget(sid, values["amount"])
                line = f"session {session.session_id} budget now {session.budget} AGPT base units"
            else:
                answer = done = await owner.complete(sid)
                line = (
                    f"session {done.session.session_id} COMPLETED: event log archived at {done.log_cid}, "
                    f"NFT burned (tx 0x{done.burn_tx_hash.hex()})"
                )
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            raise CommandFailed(
                f"cannot reach the home chain {home.name} at {home.rpc_url} ({exc or type(exc).__name__}); "
                "is it running? check --network"
            ) from None
        except Web3Exception as exc:
            raise CommandFailed(
                f"the home chain {home.name} at {home.rpc_url} refused a call ({type(exc).__name__}: {exc}); "
                "do --network's contract addresses match that chain?"
            ) from None
        finally:
            await owner.close()
    print(json_format.MessageToJson(answer) if args.json else line, flush=True)
    return 0

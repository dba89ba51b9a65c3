"""`agentgpt session create|edit-params|attach|activate|submit|add-budget|pause|resume|complete|terminate`:
the owner's commands.

Every request is signed with the owner's key (see `agentgpt.owner`), so the owner needs no ETH. The
key comes from --owner-key-file, else $AGENTGPT_OWNER_KEY, else the local stack's dev owner
(`<workdir>/owner.key`, written by `agentgpt up`). The home chain (for the signatures' nonces) comes
from --network, else $AGENTGPT_NETWORK, else the local stack's network manifest.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
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
AGPT = Decimal(10**18)


class UsageError(Exception):
    """Bad command-line input or missing local configuration; the message says what to do."""


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


def agpt_units(text: str, option: str = "--budget") -> int:
    """AGPT amount ("100", "0.5") -> base units (18 decimals)."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise UsageError(f"{option} {text!r}: not a number of AGPT") from None
    units = amount * AGPT
    if not amount.is_finite() or amount <= 0 or units != units.to_integral_value():
        raise UsageError(f"{option} {text!r}: must be a positive amount with at most 18 decimals")
    return int(units)


def json_object(text: str, what: str) -> dict[str, Any]:
    """`text` (or the file named by @FILE) parsed as a JSON object."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise UsageError(f"{what}: {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what}: must be a JSON object")
    return value


def _stack_state(args: argparse.Namespace) -> dict[str, Any]:
    from agentgpt.localnet.stack import read_state

    try:
        return read_state(Path(args.workdir))
    except FileNotFoundError:
        return {}


def owner_key(args: argparse.Namespace) -> str:
    if args.owner_key_file:
        try:
            return Path(args.owner_key_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"--owner-key-file {args.owner_key_file}: {exc.strerror}") from None
    if os.environ.get("AGENTGPT_OWNER_KEY"):
        return os.environ["AGENTGPT_OWNER_KEY"].strip()
    local = _stack_state(args).get("owner_key_file")
    if local and Path(local).exists():
        return Path(local).read_text().strip()
    raise UsageError(
        "no owner key: pass --owner-key-file FILE or set AGENTGPT_OWNER_KEY "
        "(against a local stack started with `agentgpt up`, its dev owner's key is used)"
    )


def network_path(args: argparse.Namespace) -> str:
    path = args.network or os.environ.get("AGENTGPT_NETWORK") or _stack_state(args).get("network", "")
    if not path:
        raise UsageError("no network manifest: pass --network FILE or set AGENTGPT_NETWORK")
    return str(path)


async def run(args: argparse.Namespace, target: str, session_id: Callable[[str], str]) -> int:
    """Run one owner action against the session service at `target`; print the outcome."""
    from google.protobuf import json_format
    from google.protobuf.message import Message

    from agentgpt.clients import SessionClient
    from agentgpt.common.v1 import common_pb2
    from agentgpt.network import load_network
    from agentgpt.owner import SessionOwner

    key = owner_key(args)
    network = load_network(network_path(args))
    if not network.chains:
        raise UsageError(f"{network_path(args)} lists no chains")
    async with SessionClient(target) as client:
        owner = SessionOwner(key, network.home, client)
        try:
            answer: Message
            if args.action == "create":
                try:
                    spec_yaml = Path(args.spec).read_text()
                except OSError as exc:
                    raise UsageError(f"{args.spec}: {exc.strerror}") from None
                answer = session = await owner.create(spec_yaml, agpt_units(args.budget))
                line = f"session {session.session_id} created (DRAFT), NFT minted; owner {owner.address}"
            elif args.action == "activate":
                executor = args.executor or _stack_state(args).get("executor_address", "")
                if not executor:
                    raise UsageError("--executor ADDRESS is required (no local stack to take it from)")
                answer = session = await owner.activate(session_id(args.id), executor)
                line = f"session {session.session_id} ACTIVE, executor {session.executor}"
            elif args.action == "submit":
                task = (args.kind, json_object(args.args, "--args"))
                answer = submitted = await owner.submit(session_id(args.id), [task])
                seqs = ", ".join(str(seq) for seq in submitted.task_seqs)
                line = f"session {args.id}: task {args.kind} queued as seq {seqs}"
            elif args.action in ("pause", "resume", "terminate"):
                act = {"pause": owner.pause, "resume": owner.resume, "terminate": owner.terminate}[
                    args.action
                ]
                answer = session = await act(session_id(args.id), args.reason)
                state = common_pb2.SessionState.Name(session.state).removeprefix("SESSION_STATE_")
                line = f"session {session.session_id} {state}: {session.state_reason}"
            elif args.action == "edit-params":
                params = json_object(args.params, "params")
                answer = session = await owner.edit_params(session_id(args.id), params)
                line = f"session {session.session_id} params replaced (version {session.version})"
            elif args.action == "attach":
                answer = session = await owner.attach_decorators(session_id(args.id), args.decorators)
                line = f"session {session.session_id} decorators: {', '.join(session.spec.decorators)}"
            elif args.action == "add-budget":
                amount = agpt_units(args.amount, "--amount")
                answer = session = await owner.update_budget(session_id(args.id), amount)
                line = f"session {session.session_id} budget now {session.budget} AGPT base units"
            else:
                answer = done = await owner.complete(session_id(args.id))
                line = (
                    f"session {done.session.session_id} COMPLETED: event log archived at {done.log_cid}, "
                    f"NFT burned (tx 0x{done.burn_tx_hash.hex()})"
                )
        finally:
            await owner.close()
    print(json_format.MessageToJson(answer) if args.json else line, flush=True)
    return 0

"""`agentgpt verify SESSION`: recheck a session from the chains, IPFS and Arweave alone (never the
services or their databases).

The chains' own logs (agentgpt.chain.logs.ChainLogs) give every anchor, executor assignment, state change
and final anchor; the verifier the recovery oracle uses (agentgpt.verify) rechecks the newest anchored
checkpoint and its whole history back to the first: anchors agree across chains, bytes match the CID,
the header is signed (EIP-712) by the executor assigned at its epoch, the task log and state rebuild the
anchored state root (with --key-file for sealed bodies), each checkpoint links to the previous one. For an
ended session it checks the final anchor, the archived event log on IPFS and its copy on Arweave.
Exit 0 only when everything checked verifies; what could not be checked is listed with what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from apps.cli.owner import CommandFailed, UsageError, session_id, stack_state


def add_parser(sub: Any, common: argparse.ArgumentParser, default_workdir: str) -> None:
    verify = sub.add_parser(
        "verify",
        parents=[common],
        help="recheck a session from the chains and IPFS alone: anchors, CIDs, signatures, history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
    verify.add_argument(
        "--network",
        default="",
        metavar="PATH",
        help="network manifest (chains, RPC URLs, contracts; default: $AGENTGPT_NETWORK, else the local stack's)",
    )
    verify.add_argument(
        "--ipfs-api",
        default="",
        metavar="MULTIADDR",
        help="IPFS RPC API (default: $AGENTGPT_IPFS_API, else the local stack's node)",
    )
    verify.add_argument(
        "--key-file",
        default="",
        metavar="PATH",
        help="the owner's private key file (64 hex chars): opens sealed checkpoint bodies (without it "
        "their headers are checked and the entries are reported as needing the key)",
    )
    verify.add_argument(
        "--arweave-gateway",
        default="",
        metavar="URL",
        help="Arweave gateway to check the archived log's copy on (default: $AGENTGPT_ARWEAVE_GATEWAY, "
        "else the local stack's)",
    )
    verify.add_argument("--json", action="store_true", help="the result as JSON, for scripts")
    verify.add_argument(
        "--workdir",
        default=default_workdir,
        help=f"the local stack's work directory (default: {default_workdir})",
    )


def _sources(args: argparse.Namespace) -> tuple[str, str]:
    state = stack_state(args.workdir)
    network = args.network or os.environ.get("AGENTGPT_NETWORK", "") or str(state.get("network", ""))
    ipfs = args.ipfs_api or os.environ.get("AGENTGPT_IPFS_API", "") or str(state.get("ipfs_api", ""))
    if not network:
        raise UsageError("--network: no network manifest given (and no local stack in --workdir)")
    if not ipfs:
        raise UsageError("--ipfs-api: no IPFS API given (and no local stack in --workdir)")
    if not Path(network).is_file():
        raise UsageError(f"--network: {network} is not a file")
    return network, ipfs


async def run(args: argparse.Namespace) -> int:
    from agentgpt.chain.logs import ChainLogs
    from agentgpt.errors import NotFound, ServiceError
    from agentgpt.ipfs import CheckpointReader, KuboStore
    from agentgpt.network import load_network
    from agentgpt.verify import CheckpointVerifier, check_closing

    sid = session_id(args.id)
    network_path, ipfs = _sources(args)
    legacy, keyring = _keys(args)
    network = load_network(network_path)
    domain = _domain(network)
    gateway = _gateway(args)
    store = KuboStore(ipfs)
    arweave = None
    try:
        if gateway:
            from agentgpt.arweave import ArweaveClient

            arweave = ArweaveClient(gateway)
        reader = CheckpointReader(store, key=legacy, keyring=keyring)
        verifier = CheckpointVerifier(ChainLogs(network), reader, domain=domain, require_body=False)
        try:
            resp, rejected = await verifier.newest_verified(sid)
            rec = await verifier.record(sid)
            verified_seq = resp.checkpoint.seq if resp.HasField("checkpoint") else -1
            closing = await check_closing(sid, rec, verified_seq, store, arweave)
        except NotFound as exc:
            raise CommandFailed(f"session {sid}: {exc.message}") from None
        except ServiceError as exc:
            raise CommandFailed(f"session {sid}: cannot verify now: {exc.message}") from None
    finally:
        if arweave is not None:
            await arweave.close()
        await store.close()
    history = [
        {"seq": seq, "cid": cid, "epoch": epoch, "signer": signer, "body_checked": cid not in verifier.sealed}
        for cid, seq, epoch, signer in (verifier.walked if resp.HasField("checkpoint") else [])
    ]
    ok = resp.HasField("checkpoint") and not rejected and all(f.ok is not False for f in closing)
    result = {
        "session_id": sid,
        "home_chain_id": network.home.chain_id,
        "verified": ok,
        "checkpoint": (
            {
                "seq": resp.checkpoint.seq,
                "cid": resp.checkpoint.cid,
                "state_root": "0x" + bytes(resp.checkpoint.state_root).hex(),
                "anchored_on": list(resp.verification.anchored_on),
            }
            if resp.HasField("checkpoint")
            else None
        ),
        "history": history,
        "rejected": [
            {"seq": r.checkpoint.seq, "cid": r.checkpoint.cid, "reason": r.reason} for r in rejected
        ],
        "closing": [{"check": f.name, "ok": f.ok, "detail": f.detail} for f in closing],
        "needs_key": sorted(verifier.sealed),
        "failure": "" if resp.HasField("checkpoint") else resp.verification.failure,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if ok else 1
    print(
        f"session {sid} (home chain {network.home.name}, {network.home.chain_id}): from the chains, IPFS"
        f"{' and Arweave' if gateway else ''} only"
    )
    for r in rejected:
        print(f"  REJECTED seq {r.checkpoint.seq:<5} {r.checkpoint.cid}: {r.reason}")
    if resp.HasField("checkpoint"):
        chains = ", ".join(str(c) for c in resp.verification.anchored_on)
        print(f"  newest verified checkpoint: seq {resp.checkpoint.seq}, anchored on {chains}")
        for h in history:
            body = (
                "entries and state rechecked" if h["body_checked"] else "body sealed: entries need --key-file"
            )
            print(
                f"  ok seq {h['seq']:<5} {h['cid']}  CID, anchors agree, signed by {h['signer']} "
                f"(assigned at epoch {h['epoch']}), links to the previous; {body}"
            )
    else:
        print(f"  no anchored checkpoint verifies: {resp.verification.failure}")
    for f in closing:
        mark = {True: "ok", False: "FAILED", None: "--"}[f.ok]
        print(f"  {mark} {f.name}: {f.detail}")
    if verifier.sealed:
        print(f"  {len(verifier.sealed)} sealed checkpoint(s) checked on their header only; pass --key-file")
    print("verified" if ok else "NOT verified (see above)")
    return 0 if ok else 1


def _keys(args: argparse.Namespace) -> tuple[bytes | None, Any]:
    """--key-file: the owner's (or an executor's) private key, which opens sealed v2 bodies; the same 64
    hex characters also serve as a legacy v1 checkpoint key."""
    if not args.key_file:
        return None, None
    from agentgpt.sealing import Keyring

    try:
        text = Path(args.key_file).read_text().strip()
    except OSError as exc:
        raise UsageError(f"--key-file: {args.key_file} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--key-file: {args.key_file} is not a text file of 64 hex characters") from None
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
        if len(raw) != 32:
            raise ValueError
        keyring = Keyring(private_key=raw)
    except ValueError:
        raise UsageError(
            f"--key-file: {args.key_file} does not hold a private key (64 hex characters, optionally 0x-prefixed)"
        ) from None
    return raw, keyring


def _domain(network: Any) -> Any:
    from agentgpt.checkpoint_format import Domain

    factory = network.home.contracts.get("SessionFactory")
    return Domain(network.home.chain_id, factory) if factory else None


def _gateway(args: argparse.Namespace) -> str:
    return str(
        args.arweave_gateway
        or os.environ.get("AGENTGPT_ARWEAVE_GATEWAY", "")
        or stack_state(args.workdir).get("arweave_gateway", "")
    )

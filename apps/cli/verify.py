"""`agentgpt verify SESSION`: recheck a session from the chains and IPFS alone (never the services).

The chains' own logs (agentgpt.chain.logs.ChainLogs) give every anchor and executor assignment; the
verifier the recovery oracle uses (agentgpt.verify) rechecks the newest anchored checkpoint and its whole
history back to the first: anchors agree across chains, bytes match the CID, the task log chains to the
anchored state root, every entry is signed by the executor assigned at its epoch, each checkpoint links
to the previous one. Exit 0 only when the newest anchored checkpoint verifies.
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
        help="file holding the checkpoint key (64 hex chars) for sealed checkpoints",
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
    from agentgpt.ipfs import CheckpointReader, KuboStore, checkpoint_key
    from agentgpt.network import load_network
    from agentgpt.verify import CheckpointVerifier

    sid = session_id(args.id)
    network_path, ipfs = _sources(args)
    key = None
    if args.key_file:
        from agentgpt.runtime.config import ConfigError

        try:
            key = checkpoint_key(Path(args.key_file).read_text().strip())
        except OSError as exc:
            raise UsageError(f"--key-file: {args.key_file} cannot be read ({exc.strerror or exc})") from None
        except (ConfigError, ValueError) as exc:
            raise UsageError(f"--key-file: {args.key_file} does not hold a checkpoint key ({exc})") from None
    network = load_network(network_path)
    store = KuboStore(ipfs)
    try:
        # Checkpoint bodies are sealed per session (agentgpt.sealing): without the owner's key their
        # headers are checked (signature, links, anchors) and the bodies are left sealed.
        verifier = CheckpointVerifier(
            ChainLogs(network), CheckpointReader(store, key=key), require_body=False
        )
        try:
            resp, rejected = await verifier.newest_verified(sid)
        except NotFound as exc:
            raise CommandFailed(f"session {sid}: {exc.message}") from None
        except ServiceError as exc:
            raise CommandFailed(f"session {sid}: cannot verify now: {exc.message}") from None
    finally:
        await store.close()
    ok = resp.HasField("checkpoint") and not rejected
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
        "rejected": [
            {"seq": r.checkpoint.seq, "cid": r.checkpoint.cid, "reason": r.reason} for r in rejected
        ],
        "failure": "" if resp.HasField("checkpoint") else resp.verification.failure,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if ok else 1
    print(f"session {sid} (home chain {network.home.name}, {network.home.chain_id}): chains and IPFS only")
    for r in rejected:
        print(f"  seq {r.checkpoint.seq:<6} {r.checkpoint.cid}  REJECTED: {r.reason}")
    if resp.HasField("checkpoint"):
        cp = resp.checkpoint
        chains = ", ".join(str(c) for c in resp.verification.anchored_on)
        print(
            f"  seq {cp.seq:<6} {cp.cid}  VERIFIED: anchored on {chains}, bytes match the CID, the task log "
            "chains to the anchored state root, every entry signed by the executor assigned at its epoch, "
            "history back to the first checkpoint"
        )
    else:
        print(f"  no anchored checkpoint verifies: {resp.verification.failure}")
    print("verified" if ok else "NOT verified: the newest anchored checkpoint does not verify")
    return 0 if ok else 1

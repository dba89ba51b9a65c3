"""`agentgpt session export ID`: a session's whole history, decrypted with the owner's private key alone,
from the chains and IPFS (never the services).

The chains' logs (agentgpt.chain.logs.ChainLogs) name every anchored checkpoint and every executor
assignment; each checkpoint is read from IPFS (bytes checked against the CID, the header against its
anchor), and so is every older one its `prev` link names, back to the first. A sealed body (format v2,
agentgpt.sealing) is opened through the owner's own recipient entry: every body is wrapped to the owner,
whichever executor wrote it, so no service and no executor is needed. The output is one JSON document:
the session, its assignments and, in seq order, every checkpoint's content (entries, results, memory,
budget, context, chains), plus the archived event log its final anchor names (SessionFactory's
SessionFinalized, once the session completed or was terminated; `--event-log CID` picks another). Bytes are 0x-hex, CIDs text. Progress goes to
stderr; a key that is not the owner's fails with the addresses the bodies are wrapped to.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apps.cli.owner import CommandFailed, UsageError, owner_key, session_id, shown

FORMAT = "agentgpt-session-export/1"


def add_action(add_action: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register `export` on the `agentgpt session` parser."""
    export = add_action(
        "export",
        "the session's whole history decrypted with the owner's key, from the chains and IPFS alone (JSON)",
    )
    export.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
    export.add_argument(
        "--owner-key-file",
        default="",
        help="file holding the owner's private key (hex); default: $AGENTGPT_OWNER_KEY, else the local "
        "stack's dev owner (<workdir>/owner.key)",
    )
    export.add_argument(
        "--out",
        default="-",
        metavar="FILE",
        help="where the JSON goes: a file (written whole, then moved into place) or - for stdout (default)",
    )
    export.add_argument(
        "--network",
        default="",
        metavar="PATH",
        help="network manifest (chains, RPC URLs, contracts; default: $AGENTGPT_NETWORK, else the local stack's)",
    )
    export.add_argument(
        "--ipfs-api",
        default="",
        metavar="MULTIADDR",
        help="IPFS RPC API (default: $AGENTGPT_IPFS_API, else the local stack's node)",
    )
    export.add_argument(
        "--event-log",
        default="",
        metavar="CID",
        help="include this archived event log (default: the one the session's final anchor names, once it ended)",
    )
    export.add_argument(
        "--key-file",
        default="",
        metavar="PATH",
        help="legacy checkpoint key (64 hex chars) for version-1 checkpoints sealed with the executors' key",
    )


def jsonable(value: Any) -> Any:
    """A dag-cbor value as JSON: bytes as 0x-hex, CIDs as text, maps and lists recursively."""
    from multiformats import CID

    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, CID):
        return str(value.encode("base32"))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _legacy_key(path: str) -> bytes | None:
    if not path:
        return None
    from agentgpt.ipfs import checkpoint_key
    from agentgpt.runtime.config import ConfigError

    try:
        return checkpoint_key(Path(path).read_text().strip())
    except OSError as exc:
        raise UsageError(f"--key-file: {path} cannot be read ({exc.strerror or exc})") from None
    except (ConfigError, ValueError) as exc:
        raise UsageError(f"--key-file: {path} does not hold a checkpoint key ({exc})") from None


def _content(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds, whichever its version: the body of v2, the document itself for v1."""
    body = doc.get("body") if doc.get("version") == 2 else doc
    body = body if isinstance(body, Mapping) else {}
    out = {k: jsonable(body.get(k)) for k in ("entries", "results", "memory", "budget", "context", "chains")}
    if out["results"] is None:
        out["results"] = {}
    return out


def _prev_cid(doc: Mapping[str, Any]) -> str:
    from multiformats import CID

    prev = doc.get("prev") if doc.get("version") == 2 else doc.get("prev_cid")
    if isinstance(prev, CID):
        return str(prev.encode("base32"))
    return str(prev or "")


async def export(
    sid: str,
    *,
    network_path: str,
    ipfs_api: str,
    private_key: str,
    legacy_key: bytes | None = None,
    event_log: str = "",
    progress: Callable[[str], None] = _progress,
) -> dict[str, Any]:
    """The export document of session `sid` (see the module doc)."""
    from agentgpt.chain.logs import ChainLogs
    from agentgpt.common.v1 import common_pb2 as cpb
    from agentgpt.errors import FailedPrecondition, ServiceError
    from agentgpt.indexer.v1 import indexer_pb2 as ix
    from agentgpt.ipfs import CheckpointReader, KuboStore
    from agentgpt.ipfs.errors import ContentIntegrityError
    from agentgpt.network import load_network
    from agentgpt.sealing import Keyring, is_sealed_body, sealed_epoch
    from agentgpt.verify import EVENT_NAMES, record_from_events

    network = load_network(network_path)
    keyring = Keyring(private_key=private_key)
    progress(f"session {sid}: reading its anchors and assignments from {len(network.chains)} chain(s)")
    try:
        resp = await ChainLogs(network).list_events(
            ix.ListEventsRequest(
                filter=ix.EventFilter(session_id=sid, names=list(EVENT_NAMES)), page=cpb.PageRequest()
            )
        )
    except ServiceError as exc:
        raise CommandFailed(f"session {sid}: the chains cannot be read now: {exc.message}") from None
    rec = record_from_events(list(resp.events))
    if not rec.assignments:
        raise CommandFailed(
            f"session {sid} was never activated on home chain {network.home.name} ({network.home.chain_id}): "
            "nothing to export"
        )
    store = KuboStore(ipfs_api)
    reader = CheckpointReader(store, key=legacy_key, keyring=keyring)
    raw = CheckpointReader(store, key=legacy_key)  # no keyring: the document as stored, body sealed
    docs: dict[str, dict[str, Any]] = {}
    anchored = {rec.anchors[seq][0].cid: seq for seq in rec.anchors}
    pending = [a.cid for seq in sorted(rec.anchors, reverse=True) for a in rec.anchors[seq][:1]]
    try:
        while pending:
            cid = pending.pop(0)
            if cid in docs:
                continue
            seq = anchored.get(cid)
            progress(f"  checkpoint {cid}" + (f" (seq {seq})" if seq is not None else " (linked)"))
            want = rec.anchors[seq][0] if seq is not None else None
            try:
                # the header checked against its anchor, the body as stored; then the body opened
                stored = await raw.read(
                    cid,
                    session_id=sid,
                    seq=want.seq if want else None,
                    state_root=want.state_root if want else None,
                )
                doc = stored
                if is_sealed_body(stored.get("body")):
                    doc = {**stored, "body": await reader.open_sealed(cid, stored)}
            except FailedPrecondition as exc:
                raise CommandFailed(
                    f"session {sid}: {exc.message}".replace(
                        "(the owner's: --owner-key-file)",
                        "(pass the session owner's key with --owner-key-file)",
                    )
                ) from None
            except ContentIntegrityError as exc:
                raise CommandFailed(
                    f"session {sid}: checkpoint {cid} does not open with the key of {keyring.address}: "
                    f"{exc.message}"
                ) from None
            body = stored.get("body")
            sealed = isinstance(body, Mapping) and is_sealed_body(body)
            entry = {
                "seq": int(doc["seq"]),
                "cid": cid,
                "version": doc.get("version"),
                "state_root": jsonable(doc["state_root"]),
                "anchored_on": sorted(
                    {a.chain_id for a in rec.anchors.get(int(doc["seq"]), []) if a.cid == cid}
                ),
                "epoch": doc.get("epoch"),
                "executor": doc.get("executor"),
                "prev": _prev_cid(doc) or None,
                "sealed": sealed,
                "key_epoch": sealed_epoch(body) if isinstance(body, Mapping) and sealed else None,
                **_content(doc),
            }
            docs[cid] = entry
            prev = _prev_cid(doc)
            if prev and prev not in docs:
                pending.append(prev)
        log_doc = None
        if not event_log and rec.final is not None and rec.final.log_cid:
            event_log = rec.final.log_cid  # the final anchor names it (SessionFinalized)
        if event_log:
            progress(f"  event log {event_log}")
            try:
                log_doc = json.loads(await store.get(event_log))
            except ServiceError as exc:
                raise CommandFailed(f"--event-log {shown(event_log)}: {exc.message}") from None
            except ValueError:
                raise CommandFailed(f"--event-log {shown(event_log)} is not a JSON event log") from None
            if str(log_doc.get("session_id")) != sid:
                raise CommandFailed(
                    f"--event-log {shown(event_log)} is session {log_doc.get('session_id')}'s log, not {sid}'s"
                )
    except ServiceError as exc:  # IPFS unreachable, a checkpoint not found
        raise CommandFailed(f"session {sid}: IPFS ({ipfs_api}): {exc.message}") from None
    finally:
        await store.close()
    checkpoints = sorted(docs.values(), key=lambda d: (d["seq"], d["cid"]))
    progress(f"session {sid}: {len(checkpoints)} checkpoint(s) exported")
    return {
        "format": FORMAT,
        "session_id": sid,
        "home_chain_id": network.home.chain_id,
        "exported_by": keyring.address,
        "exported_at": int(time.time()),
        "assignments": [{"epoch": e, "executor": who} for e, who in rec.assignments],
        "checkpoints": checkpoints,
        "event_log": log_doc,
    }


def _write(text: str, out: str) -> None:
    if out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".export-", dir=target.parent if str(target.parent) else ".")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise UsageError(f"--out: {out} cannot be written ({exc.strerror or exc})") from None


async def run(args: argparse.Namespace) -> int:
    from apps.cli.verify import _sources

    sid = session_id(args.id)
    network_path, ipfs_api = _sources(args)
    key = owner_key(args)
    legacy = _legacy_key(args.key_file)
    doc = await export(
        sid,
        network_path=network_path,
        ipfs_api=ipfs_api,
        private_key=key,
        legacy_key=legacy,
        event_log=args.event_log,
    )
    _write(json.dumps(doc, indent=2, sort_keys=True) + "\n", args.out)
    if args.out != "-":
        _progress(f"written to {args.out}")
    return 0

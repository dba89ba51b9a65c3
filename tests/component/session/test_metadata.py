"""The metadata publisher against a running session service (in-memory chain, embedded IPFS store): it
points each changed live session's token at its current document, once per change, and retries."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from agentgpt.errors import Unavailable
from agentgpt.ipfs import EmbeddedStore
from services.session.memory import InMemorySessionChain
from services.session.metadata import MetadataSync, token_uri
from tests.support import metric_value

from .conftest import MakeService
from .harness import Owner

EXECUTOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


class FlakyStore(EmbeddedStore):
    down = False

    async def put(self, data: bytes, codec: str = "raw") -> str:  # type: ignore[override]
        if self.down:
            raise Unavailable("IPFS node unreachable")
        return await super().put(data, codec)  # type: ignore[arg-type]


def updates(registry: CollectorRegistry, result: str) -> float:
    from prometheus_client import generate_latest

    return metric_value(
        generate_latest(registry).decode(), "agentgpt_session_metadata_updates_total", result=result
    )


async def test_each_change_sets_a_new_document_once_and_failures_are_retried(
    make_service: MakeService, owner: Owner, tmp_path: Path
) -> None:
    chain = InMemorySessionChain()
    h = await make_service(chain=chain)
    store = FlakyStore(tmp_path / "meta")
    registry = CollectorRegistry()
    sync = MetadataSync(h.control.db, chain, store, registry, interval=0.01)
    h.control.bus.listeners.append(sync.mark)

    s = await h.create(owner)
    sid = int(s.session_id)
    await sync.sync_once()
    rec = await h.control.db.get(s.session_id)
    assert rec is not None and chain.token_uris[sid] == token_uri(rec)
    doc = json.loads(await store.get(chain.token_uris[sid].removeprefix("ipfs://")))
    assert doc["properties"]["state"] == "DRAFT" and updates(registry, "ok") == 1
    assert json.loads(await store.get(doc["properties"]["spec_cid"]))["type"] == s.spec.type

    sync.mark(s.session_id)  # nothing changed: no new document, no transaction
    await sync.sync_once()
    assert updates(registry, "ok") == 1

    store.down = True
    await h.activate(owner, s, EXECUTOR)  # the change marks it (through the service's event bus)
    await sync.sync_once()
    assert updates(registry, "failed") == 1 and s.session_id in sync._dirty  # kept for the next pass
    assert json.loads(await store.get(chain.token_uris[sid].removeprefix("ipfs://")))["properties"][
        "state"
    ] == ("DRAFT")
    store.down = False
    await sync.sync_once()
    active = await h.control.db.get(s.session_id)
    assert active is not None and chain.token_uris[sid] == token_uri(active)
    assert json.loads(await store.get(token_uri(active).removeprefix("ipfs://")))["properties"][
        "executor"
    ] == (EXECUTOR)
    assert updates(registry, "ok") == 2 and chain.calls == ["create", "activate"]  # lifecycle untouched


async def test_a_restarted_publisher_catches_up_on_every_live_session(
    make_service: MakeService, owner: Owner, tmp_path: Path
) -> None:
    chain = InMemorySessionChain()
    h = await make_service(chain=chain)
    made = [await h.create(owner) for _ in range(3)]
    sync = MetadataSync(h.control.db, chain, EmbeddedStore(tmp_path / "meta"), CollectorRegistry())
    await sync._mark_live()  # what run() does first
    await sync.sync_once()
    assert sorted(chain.token_uris) == sorted(int(s.session_id) for s in made)

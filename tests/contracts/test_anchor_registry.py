"""AnchorRegistry: per-session writers with epochs, strictly increasing seq, the factory's event shape."""

from __future__ import annotations

from eth_utils.crypto import keccak

from .chain import Chain

HOME = 8453  # anchors for sessions whose home chain is another chain


def test_anchor_event_has_the_factory_shape(chain: Chain) -> None:
    c = chain
    ours = next(e for e in c.anchors.abi if e.get("name") == "CheckpointAnchored")
    theirs = next(e for e in c.factory.abi if e.get("name") == "CheckpointAnchored")
    assert ours == theirs


def test_writer_lifecycle_and_anchors(chain: Chain) -> None:
    c, a = chain, chain.actors
    r = c.anchors.functions
    c.reverts(r.grantWriter(HOME, 7, a.executor), a.stranger, "AccessControlUnauthorizedAccount")
    c.reverts(r.grantWriter(HOME, 7, "0x" + "00" * 20), a.admin, "ZeroAddress")
    c.reverts(r.anchorCheckpoint(HOME, 7, 1, b"cid", b"\x01" * 32), a.executor, "NotAuthorizedWriter")
    receipt = c.tx(r.grantWriter(HOME, 7, a.executor), a.admin)
    assert c.events(receipt, c.anchors, "WriterGranted")[0]["args"]["epoch"] == 1
    receipt = c.tx(r.anchorCheckpoint(HOME, 7, 1, b"cid-1", b"\x01" * 32), a.executor)
    ev = c.events(receipt, c.anchors, "CheckpointAnchored")[0]["args"]
    assert (ev["homeChainId"], ev["sessionId"], ev["seq"], ev["writer"], ev["epoch"], ev["cid"]) == (
        HOME,
        7,
        1,
        a.executor,
        1,
        b"cid-1",
    )
    assert r.streamOf(HOME, 7).call() == [a.executor, 1, 1, keccak(keccak(b"cid-1") + b"\x01" * 32)]
    c.reverts(r.anchorCheckpoint(HOME, 7, 1, b"cid", b"\x01" * 32), a.executor, "NonIncreasingSeq")
    # keyed by (homeChainId, sessionId): the same session id of another home chain is separate
    c.reverts(r.anchorCheckpoint(HOME + 1, 7, 2, b"cid", b"\x01" * 32), a.executor, "NotAuthorizedWriter")
    # re-grant to another writer: the old one is fenced, the sequence continues
    c.tx(r.grantWriter(HOME, 7, a.executor2), a.admin)
    c.reverts(r.anchorCheckpoint(HOME, 7, 2, b"cid", b"\x01" * 32), a.executor, "NotAuthorizedWriter")
    c.tx(r.anchorCheckpoint(HOME, 7, 2, b"cid-2", b"\x02" * 32), a.executor2)
    c.reverts(r.revokeWriter(HOME, 7), a.stranger, "AccessControlUnauthorizedAccount")
    receipt = c.tx(r.revokeWriter(HOME, 7), a.admin)
    ev = c.events(receipt, c.anchors, "WriterRevoked")[0]["args"]
    assert (ev["writer"], ev["epoch"]) == (a.executor2, 3)
    c.reverts(r.anchorCheckpoint(HOME, 7, 3, b"cid", b"\x01" * 32), a.executor2, "NotAuthorizedWriter")

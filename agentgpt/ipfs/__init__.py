"""IPFS side of checkpoints: local CIDs, canonical dag-cbor, AES-GCM envelopes, content stores.

Shared by the session service (archives event logs), the executor (writes checkpoints) and the
recovery oracle (fetches and verifies them). Nothing here trusts a node: CIDs are computed locally and
every byte read back is checked against its CID.

    store = open_store()                        # AGENTGPT_IPFS_API, or the embedded store
    cid, size = await CheckpointWriter(store).write(doc, sealing=sealing)   # v2: body sealed per session
    doc = await CheckpointReader(store, keyring=keyring).read(cid, session_id=sid, seq=seq, state_root=root)
"""

from __future__ import annotations

from agentgpt.ipfs.checkpoints import (
    BODY_VERSION,
    REQUIRED_KEYS,
    CheckpointReader,
    CheckpointWriter,
    KeySource,
    StoredCheckpoint,
    checkpoint_aad,
    checkpoint_key,
    has_body,
    validate_checkpoint,
)
from agentgpt.ipfs.cid import Codec, codec_of, compute_cid, file_cid, normalize, raw_cid, verify
from agentgpt.ipfs.codec import decode, encode, generate_key, is_sealed, open_, seal
from agentgpt.ipfs.errors import (
    CheckpointIntegrityError,
    CidMismatchError,
    ContentIntegrityError,
    ContentNotFound,
    DecryptionError,
    DocumentFormatError,
)
from agentgpt.ipfs.store import ContentStore, EmbeddedStore, IpfsConfig, KuboStore, open_store

__all__ = [
    "BODY_VERSION",
    "REQUIRED_KEYS",
    "CheckpointIntegrityError",
    "CheckpointReader",
    "CheckpointWriter",
    "CidMismatchError",
    "Codec",
    "ContentIntegrityError",
    "ContentNotFound",
    "ContentStore",
    "DecryptionError",
    "DocumentFormatError",
    "EmbeddedStore",
    "IpfsConfig",
    "KeySource",
    "KuboStore",
    "StoredCheckpoint",
    "checkpoint_aad",
    "checkpoint_key",
    "codec_of",
    "compute_cid",
    "decode",
    "encode",
    "file_cid",
    "generate_key",
    "has_body",
    "is_sealed",
    "normalize",
    "open_",
    "open_store",
    "raw_cid",
    "seal",
    "validate_checkpoint",
    "verify",
]

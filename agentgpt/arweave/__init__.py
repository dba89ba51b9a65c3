"""Arweave as the permanent audit log: a completed session's archived event log, and a workflow's report
and filing, posted to an Arweave gateway as tagged transactions whose ids are then anchored on chain.

Pure Python (cryptography, aiohttp): no Node at run time. Locally and in tests the gateway is arlocal
(tools/arlocal, started by apps.localnet.arweave.ArlocalNode); in production a gateway URL and a wallet
file mounted from a Secret (ArweaveConfig: AGENTGPT_ARWEAVE_GATEWAY, AGENTGPT_ARWEAVE_WALLET_PATH).

    wallet = Wallet.load("/secrets/arweave/wallet.json")          # or Wallet.generate() for arlocal
    async with ArweaveClient("https://arweave.net", wallet) as ar:
        tx_id = await ar.post(log_bytes, archive_tags(kind="event-log", session_id=7, chain_id=31337, seq=42))
        anchor = tx_id_bytes(tx_id)                                 # 32 bytes: a bytes32 on chain
        tx = await ar.read(tx_id)                                   # verified, or TransactionIntegrityError
        ids = await ar.find({"App-Name": APP_NAME, "Session-Id": "7"})

The format, enough to reimplement it (arweave-js 1.15.7 is the reference: lib/deepHash.ts, lib/merkle.ts,
lib/transaction.ts; tests/fixtures/arweave/vectors.json holds vectors it produced):

base64url
    RFC 4648 §5 without padding. Every binary field travels in it; ids, addresses and data roots are 32
    bytes, so 43 characters.

Wallet
    An RSA key of 4096 bits, public exponent 65537, stored as a JWK (kty, n, e, d, p, q, dp, dq, qi, all
    base64url big-endian). `owner` is the modulus n as 512 bytes; the wallet's address is
    base64url(sha256(owner)).

Deep hash (SHA-384)
    deep_hash(blob b) = sha384(sha384("blob" + decimal(len(b))) + sha384(b))
    deep_hash(list l) = fold over l from acc = sha384("list" + decimal(len(l))):
                        acc = sha384(acc + deep_hash(item)); the result is the final acc
    (strings are their ASCII/UTF-8 bytes; "+" is concatenation; an empty list is sha384("list0")).

data_root (the chunk merkle tree, SHA-256)
    Chunks: while at least 256 KiB (262144 bytes) remain, cut a 256 KiB chunk, except that when the
    bytes that would remain after it are more than 0 but fewer than 32 KiB, cut half of what remains
    (rounded up) instead, so the last two chunks are even. What remains after the loop is the last
    chunk; it may be EMPTY (no data, or a whole number of 256 KiB chunks) and that empty chunk is still
    a leaf. note(x) is x as 32 bytes big-endian.
        leaf   = sha256(sha256(sha256(chunk bytes)) + sha256(note(chunk end offset)))
        branch = sha256(sha256(left.id) + sha256(right.id) + sha256(note(left end offset))),
                 whose end offset is right's
    Pair each layer left to right; an odd last node goes up unchanged; repeat until one node: its id is
    the merkle root. A transaction's data_root is the merkle root of its data, or empty for no data.

Format-2 transaction
    Fields: format 2, owner, target (empty), quantity "0", reward (winston, decimal string, from
    GET /price/<data size>), last_tx (GET /tx_anchor, base64url), tags (name/value byte pairs, base64url
    each on the wire, in order), data_size (decimal string), data_root, data (inline, base64url).
    Signature data = deep_hash([b"2", owner, target, quantity, reward, last_tx,
                                [[name1, value1], [name2, value2], ...], data_size, data_root])
    with quantity, reward and data_size as their ASCII strings and the rest raw bytes.
    signature = RSA-PSS(SHA-256, MGF1-SHA-256, salt length 32) over those 48 bytes; verifiers accept any
    salt length (arweave-js signs with the maximum by default). id = base64url(sha256(signature)).
    POST /tx takes the JSON of all fields; GET /tx/<id> answers it without data; GET /<id> serves the raw
    data. Reading verifies: id == sha256(signature), len(data) == data_size, data_root recomputed, and the
    signature over the recomputed signature data with the owner's modulus.

Tags this product writes (archive_tags): App-Name "agentgpt-sessions", Kind ("event-log", "report",
"filing"), Session-Id, Chain-Id, Seq, Content-Type; GraphQL `transactions(tags: ...)` finds them once mined.
"""

from agentgpt.arweave.client import (
    APP_NAME,
    KINDS,
    ArweaveClient,
    ArweaveConfig,
    ArweaveTx,
    archive_tags,
    open_client,
    verify,
)
from agentgpt.arweave.codec import (
    FormatError,
    Transaction,
    b64url_decode,
    b64url_encode,
    chunk_boundaries,
    data_root,
    deep_hash,
    merkle_root,
    tx_id_bytes,
    tx_id_from_bytes,
)
from agentgpt.arweave.errors import (
    InsufficientFunds,
    TransactionIntegrityError,
    TransactionNotFound,
    TransactionPending,
    TransactionRejected,
    WalletError,
)
from agentgpt.arweave.wallet import Wallet, verify_signature

__all__ = [
    "APP_NAME",
    "KINDS",
    "ArweaveClient",
    "ArweaveConfig",
    "ArweaveTx",
    "FormatError",
    "InsufficientFunds",
    "Transaction",
    "TransactionIntegrityError",
    "TransactionNotFound",
    "TransactionPending",
    "TransactionRejected",
    "Wallet",
    "WalletError",
    "archive_tags",
    "b64url_decode",
    "b64url_encode",
    "chunk_boundaries",
    "data_root",
    "deep_hash",
    "merkle_root",
    "open_client",
    "tx_id_bytes",
    "tx_id_from_bytes",
    "verify",
    "verify_signature",
]

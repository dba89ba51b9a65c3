"""`ArweaveClient`: post tagged format-2 transactions to an Arweave gateway and read them back verified.

The gateway is never trusted: `post` builds, signs and ids the transaction locally (the gateway only prices
it, gives the anchor and stores it), and `read` recomputes the data_root, the id and the signature from what
the gateway serves before returning a byte of it. See the package docstring for the formats.

Every call has a client-side timeout; connection failures are retried a bounded number of times with
backoff (posting is idempotent: a transaction's id is fixed by its signature); everything else surfaces as
the domain errors of agentgpt.arweave.errors, with the gateway's URL and what to do in the message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from agentgpt.arweave.codec import FormatError, Transaction, b64url_decode, data_root, tx_id_bytes
from agentgpt.arweave.errors import (
    InsufficientFunds,
    TransactionIntegrityError,
    TransactionNotFound,
    TransactionPending,
    TransactionRejected,
)
from agentgpt.arweave.wallet import Wallet, verify_signature
from agentgpt.errors import FailedPrecondition, InvalidArgument, Unavailable
from agentgpt.runtime.config import load, setting

#: `App-Name` of every transaction this product posts: what a GraphQL search starts from.
APP_NAME = "agentgpt-sessions"
#: The `Kind` tags in use: a completed session's archived event log, a workflow's report, and its filing.
KINDS = ("event-log", "report", "filing")
#: Arweave refuses transactions whose tag names and values add up to more than this many bytes.
MAX_TAG_BYTES = 2048
#: Data travels inline in POST /tx; larger payloads would need the chunk upload (/chunk), not implemented.
MAX_INLINE_DATA = 10 * 1024 * 1024
#: Largest transaction `read` fetches (a guard against a gateway streaming without end).
MAX_READ_DATA = 64 * 1024 * 1024
#: GraphQL page size (the gateways' maximum).
PAGE_SIZE = 100


@dataclasses.dataclass(frozen=True)
class ArweaveConfig:
    """Where the audit log is archived (AGENTGPT_ARWEAVE_*)."""

    arweave_gateway: str = setting(
        "",
        "URL of the Arweave gateway completed sessions' event logs and reports are posted to "
        "(https://arweave.net; local: the stack's arlocal). Empty: nothing is archived to Arweave",
    )
    arweave_wallet_path: str = setting(
        "",
        "Path of the Arweave wallet (JWK JSON, RSA-4096) that signs and pays for archive transactions; "
        "mount it from a Secret. Empty: the gateway is only read",
    )
    arweave_timeout: float = setting(
        30.0, "Seconds one Arweave gateway call may take before it fails as UNAVAILABLE"
    )
    arweave_retries: int = setting(
        2, "Extra attempts, with exponential backoff, when the gateway is unreachable"
    )


def open_client(config: ArweaveConfig | None = None) -> ArweaveClient | None:
    """The client the configuration asks for, or None when no gateway is configured."""
    config = load(ArweaveConfig) if config is None else config
    if not config.arweave_gateway.strip():
        return None
    wallet = Wallet.load(config.arweave_wallet_path) if config.arweave_wallet_path.strip() else None
    return ArweaveClient(
        config.arweave_gateway, wallet, timeout=config.arweave_timeout, retries=config.arweave_retries
    )


def archive_tags(
    *,
    kind: str,
    session_id: str | int,
    chain_id: int,
    seq: int,
    content_type: str = "application/json",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The tags every archive transaction carries, in a fixed order (the order is signed):
    App-Name, Kind, Session-Id, Chain-Id, Seq, Content-Type, then `extra`."""
    if kind not in KINDS:
        raise InvalidArgument("kind", f"unknown archive kind {kind!r}; use one of {', '.join(KINDS)}")
    tags = {
        "App-Name": APP_NAME,
        "Kind": kind,
        "Session-Id": str(session_id),
        "Chain-Id": str(chain_id),
        "Seq": str(seq),
        "Content-Type": content_type,
    }
    for name, value in (extra or {}).items():
        if name in tags:
            raise InvalidArgument("tags", f"{name!r} is set by archive_tags itself")
        tags[name] = value
    return tags


def _check_tags(tags: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = list(tags.items()) if isinstance(tags, Mapping) else list(tags)
    size = 0
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgument("tags", f"names and values must be strings, got {name!r}: {value!r}")
        if not name or not value:
            raise InvalidArgument(
                "tags", f"empty tag name or value ({name!r}: {value!r}); gateways refuse them"
            )
        size += len(name.encode()) + len(value.encode())
    if size > MAX_TAG_BYTES:
        raise InvalidArgument("tags", f"{size} bytes of tag names and values; Arweave allows {MAX_TAG_BYTES}")
    return pairs


@dataclasses.dataclass(frozen=True)
class ArweaveTx:
    """A transaction read back and verified: its id matches its signature, the signature its fields and
    owner, and `data` its data_root."""

    id: str
    owner_address: str
    tags: tuple[tuple[str, str], ...]
    data: bytes
    transaction: Transaction

    def tag(self, name: str) -> str | None:
        """The value of the first tag called `name`, or None."""
        return next((value for key, value in self.tags if key == name), None)

    @property
    def tag_map(self) -> dict[str, str]:
        """The tags as a dict (the first value of a repeated name wins)."""
        out: dict[str, str] = {}
        for key, value in self.tags:
            out.setdefault(key, value)
        return out


def _parse_gateway(url: str) -> URL:
    parsed = URL(url.strip().rstrip("/"))
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidArgument("gateway_url", f"expected an http(s)://host[:port] URL, got {url!r}")
    return parsed


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first `limit` bytes: a gateway cannot make us buffer more than we expect."""
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def _excerpt(body: bytes) -> str:
    return " ".join(body[:300].decode("utf-8", errors="replace").split()) or "(empty body)"


class ArweaveClient:
    """One Arweave gateway (arweave.net, a self-hosted gateway, or arlocal), and optionally the wallet that
    signs and pays. Use as `async with ArweaveClient(url, wallet) as client:` or call close()."""

    def __init__(
        self,
        gateway_url: str,
        wallet: Wallet | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.2,
    ) -> None:
        self.base_url = _parse_gateway(gateway_url)
        self.wallet = wallet
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._session: aiohttp.ClientSession | None = None

    @property
    def gateway_url(self) -> str:
        return str(self.base_url)

    def __repr__(self) -> str:
        return f"ArweaveClient({self.gateway_url}, wallet={self.wallet.address if self.wallet else None})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ plumbing
    def _http(self) -> aiohttp.ClientSession:
        # Created lazily: an aiohttp session belongs to the loop it was made on.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _request(
        self, method: str, path: str, *, what: str, json_body: Any = None, max_body: int | None = None
    ) -> tuple[int, bytes]:
        """One HTTP call: (status, body, cut after `max_body` bytes when given). Connection failures are
        retried; a timeout is not (a slow gateway stays slow and callers need a bounded wait); both end as
        Unavailable naming the gateway, and so do 429 and 5xx answers."""
        url = self.base_url.with_path(self.base_url.path.rstrip("/") + path, encoded=False)
        attempts = self.retries + 1
        last: BaseException | None = None
        for attempt in range(attempts):
            try:
                async with self._http().request(method, url, json=json_body) as resp:
                    body = await resp.read() if max_body is None else await _read_at_most(resp, max_body)
                    if resp.status == 429 or resp.status >= 500:
                        raise Unavailable(
                            f"Arweave gateway {self.gateway_url} failed {what}: HTTP {resp.status}: {_excerpt(body)}"
                        )
                    return resp.status, body
            except TimeoutError:
                raise Unavailable(
                    f"Arweave gateway {self.gateway_url} timed out after {self.timeout:g}s on {what} "
                    "(AGENTGPT_ARWEAVE_TIMEOUT)"
                ) from None
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError) as exc:
                last = exc
                if attempt + 1 < attempts:
                    await asyncio.sleep(self.backoff * 2**attempt)
        raise Unavailable(
            f"Arweave gateway {self.gateway_url} unreachable for {what} after {attempts} attempts "
            f"({type(last).__name__}: {last}); is it running, and does AGENTGPT_ARWEAVE_GATEWAY point at it?"
        )

    def _json(self, body: bytes, what: str) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise Unavailable(
                f"Arweave gateway {self.gateway_url} answered {what} with something that is not JSON: "
                f"{_excerpt(body)}"
            ) from None

    def _text_number(self, body: bytes, what: str) -> str:
        text = body.decode("ascii", errors="replace").strip()
        if not text.isdigit():
            raise Unavailable(f"Arweave gateway {self.gateway_url} answered {what} with {_excerpt(body)!r}")
        return text

    def _require_wallet(self, what: str) -> Wallet:
        if self.wallet is None:
            raise FailedPrecondition(
                f"{what} needs an Arweave wallet; none is configured (AGENTGPT_ARWEAVE_WALLET_PATH)"
            )
        return self.wallet

    @staticmethod
    def _check_id(tx_id: str) -> None:
        try:
            tx_id_bytes(tx_id)
        except FormatError as exc:
            raise InvalidArgument("tx_id", str(exc).removeprefix("tx_id: ")) from None

    # ------------------------------------------------------------ gateway
    async def info(self) -> dict[str, Any]:
        """GET /info: the gateway's network and height (a health probe)."""
        status, body = await self._request("GET", "/info", what="GET /info")
        if status != 200:
            raise Unavailable(f"Arweave gateway {self.gateway_url} answered GET /info with HTTP {status}")
        info = self._json(body, "GET /info")
        if not isinstance(info, dict):
            raise Unavailable(f"Arweave gateway {self.gateway_url}: GET /info is not an object")
        return info

    async def price(self, size: int) -> str:
        """The reward, in winston, the gateway asks to store `size` bytes."""
        status, body = await self._request("GET", f"/price/{size}", what=f"GET /price/{size}")
        if status != 200:
            raise Unavailable(f"Arweave gateway {self.gateway_url} answered GET /price with HTTP {status}")
        return self._text_number(body, "GET /price")

    async def anchor(self) -> bytes:
        """A recent block hash to anchor a new transaction to (GET /tx_anchor)."""
        status, body = await self._request("GET", "/tx_anchor", what="GET /tx_anchor")
        if status != 200:
            raise Unavailable(
                f"Arweave gateway {self.gateway_url} answered GET /tx_anchor with HTTP {status}"
            )
        try:
            return b64url_decode(body.decode("ascii").strip(), "tx_anchor")
        except (UnicodeDecodeError, FormatError):
            raise Unavailable(
                f"Arweave gateway {self.gateway_url}: GET /tx_anchor is not base64url: {_excerpt(body)!r}"
            ) from None

    # ------------------------------------------------------------ writing
    async def build(self, data: bytes, tags: Mapping[str, str] | Sequence[tuple[str, str]]) -> Transaction:
        """A signed transaction carrying `data` and `tags`, priced and anchored by the gateway; not posted."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument("data", f"must be bytes, not {type(data).__name__}")
        if len(data) > MAX_INLINE_DATA:
            raise InvalidArgument(
                "data", f"{len(data)} bytes; this client posts at most {MAX_INLINE_DATA} bytes inline"
            )
        pairs = _check_tags(tags)
        wallet = self._require_wallet("posting a transaction")
        reward, last_tx = await asyncio.gather(self.price(len(data)), self.anchor())
        tx = Transaction.create(
            owner=wallet.owner, data=bytes(data), tags=pairs, reward=reward, last_tx=last_tx
        )
        return tx.with_signature(wallet.sign(tx.signature_data()))

    async def submit(self, tx: Transaction) -> str:
        """POST a signed transaction; its id. Posting the same transaction again is harmless."""
        if not tx.signature:
            raise InvalidArgument("tx", "the transaction is not signed")
        what = f"POST /tx ({tx.data_size} bytes)"
        status, body = await self._request("POST", "/tx", what=what, json_body=tx.to_json())
        if status in (200, 202, 208):  # 208: the gateway already has it
            return tx.id
        # A repeat of a transaction the gateway holds (arlocal answers it with 404; a retried POST whose first
        # attempt landed) is not a failure. A 400 is: that body is invalid, whatever holds the same id.
        if status != 400 and await self._holds(tx.id):
            return tx.id
        message = _excerpt(body)
        if status in (402, 410) or "enough" in message.lower():
            raise InsufficientFunds(
                f"Arweave gateway {self.gateway_url} refused transaction {tx.id}: wallet {tx.owner_address} "
                f"cannot pay its reward of {tx.reward} winston (HTTP {status}: {message}); fund the wallet",
                status=status,
            )
        raise TransactionRejected(
            f"Arweave gateway {self.gateway_url} refused transaction {tx.id}: HTTP {status}: {message}",
            status=status,
        )

    async def _holds(self, tx_id: str) -> bool:
        """Whether the gateway already serves headers for `tx_id` (never raises: a probe only)."""
        try:
            status, body = await self._request("GET", f"/tx/{tx_id}", what=f"GET /tx/{tx_id}")
            return status in (200, 202) and (status == 202 or json.loads(body).get("id") == tx_id)
        except (Unavailable, ValueError, AttributeError):
            return False

    async def post(self, data: bytes, tags: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
        """Sign and post `data` with `tags` (see archive_tags); the transaction id. It is final once mined:
        poll `confirmations`, or on arlocal call `mine`."""
        return await self.submit(await self.build(data, tags))

    # ------------------------------------------------------------ reading
    async def confirmations(self, tx_id: str) -> int | None:
        """How many blocks were mined after the one holding `tx_id` (0: in the newest block); None while it
        is pending (TransactionNotFound if unknown)."""
        self._check_id(tx_id)
        status, body = await self._request("GET", f"/tx/{tx_id}/status", what=f"GET /tx/{tx_id}/status")
        if status == 404:
            raise TransactionNotFound(
                f"Arweave gateway {self.gateway_url} does not know {tx_id}", tx_id=tx_id
            )
        if status == 202 or body.strip() == b"Pending":
            return None
        if status != 200:
            raise Unavailable(f"Arweave gateway {self.gateway_url}: GET /tx/{tx_id}/status: HTTP {status}")
        info = self._json(body, f"GET /tx/{tx_id}/status")
        try:
            return int(info["number_of_confirmations"])
        except (KeyError, TypeError, ValueError):
            raise Unavailable(
                f"Arweave gateway {self.gateway_url}: GET /tx/{tx_id}/status has no confirmations count"
            ) from None

    async def read(self, tx_id: str) -> ArweaveTx:
        """The transaction `tx_id` with its data, verified (TransactionIntegrityError if anything the
        gateway served does not match what the owner signed)."""
        self._check_id(tx_id)
        status, body = await self._request("GET", f"/tx/{tx_id}", what=f"GET /tx/{tx_id}")
        if status == 404:
            raise TransactionNotFound(
                f"Arweave gateway {self.gateway_url} does not know transaction {tx_id}", tx_id=tx_id
            )
        if status == 202:
            raise TransactionPending(
                f"Arweave gateway {self.gateway_url} has transaction {tx_id} pending; read it once mined",
                tx_id=tx_id,
            )
        if status != 200:
            raise Unavailable(f"Arweave gateway {self.gateway_url}: GET /tx/{tx_id}: HTTP {status}")
        try:
            headers = json.loads(body)
            if not isinstance(headers, dict):
                raise ValueError("not an object")
            header_tx = Transaction.from_json(headers)
        except ValueError as exc:
            raise TransactionIntegrityError(
                f"Arweave gateway {self.gateway_url} served malformed headers for {tx_id}: {exc}", tx_id=tx_id
            ) from None
        if header_tx.data_size > MAX_READ_DATA:
            raise InvalidArgument(
                "tx_id",
                f"{tx_id} holds {header_tx.data_size} bytes; this client reads at most {MAX_READ_DATA}",
            )
        data = b""
        if header_tx.data_size:
            # One byte more than stated, so that a gateway serving extra bytes fails verification.
            status, data = await self._request(
                "GET", f"/{tx_id}", what=f"GET /{tx_id} (data)", max_body=header_tx.data_size + 1
            )
            if status in (202, 404):
                raise TransactionPending(
                    f"Arweave gateway {self.gateway_url} does not serve the data of {tx_id} yet (HTTP {status})",
                    tx_id=tx_id,
                )
            if status != 200:
                raise Unavailable(f"Arweave gateway {self.gateway_url}: GET /{tx_id}: HTTP {status}")
        tx = dataclasses.replace(header_tx, data=data)
        verify(tx, tx_id, gateway=self.gateway_url)
        return ArweaveTx(
            id=tx_id,
            owner_address=tx.owner_address,
            tags=tuple((n.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for n, v in tx.tags),
            data=data,
            transaction=tx,
        )

    async def find(self, tags: Mapping[str, str], *, limit: int = 1000) -> list[str]:
        """Ids of the transactions carrying every one of `tags`, oldest block first (GraphQL), at most
        `limit`. arweave.net indexes a transaction once it is mined; arlocal at once."""
        if not tags:
            raise InvalidArgument("tags", "give at least one tag to search by")
        _check_tags(tags)
        query = (
            "query($tags: [TagFilter!], $first: Int, $after: String) {"
            " transactions(tags: $tags, first: $first, after: $after, sort: HEIGHT_ASC) {"
            " pageInfo { hasNextPage } edges { cursor node { id } } } }"
        )
        filters = [{"name": name, "values": [value]} for name, value in tags.items()]
        ids: list[str] = []
        after: str | None = None
        while len(ids) < limit:
            variables = {"tags": filters, "first": min(PAGE_SIZE, limit - len(ids)), "after": after}
            status, body = await self._request(
                "POST", "/graphql", what="POST /graphql", json_body={"query": query, "variables": variables}
            )
            answer = self._json(body, "POST /graphql")
            if status != 200 or not isinstance(answer, dict) or answer.get("errors"):
                errors = answer.get("errors") if isinstance(answer, dict) else None
                raise Unavailable(
                    f"Arweave gateway {self.gateway_url} failed a GraphQL search (HTTP {status}): "
                    f"{json.dumps(errors)[:300] if errors else _excerpt(body)}"
                )
            try:
                page = answer["data"]["transactions"]
                edges = page["edges"]
                ids.extend(str(edge["node"]["id"]) for edge in edges)
                more = bool(page["pageInfo"]["hasNextPage"]) and bool(edges)
                after = str(edges[-1]["cursor"]) if edges else None
            except (KeyError, TypeError, IndexError):
                raise Unavailable(
                    f"Arweave gateway {self.gateway_url}: unexpected GraphQL answer {_excerpt(body)}"
                ) from None
            if not more:
                break
        return ids[:limit]

    # ------------------------------------------------------------ arlocal only
    async def _arlocal(self, path: str, what: str) -> bytes:
        status, body = await self._request("GET", path, what=f"GET {path}")
        if status != 200:
            raise FailedPrecondition(
                f"{what} is an arlocal test-gateway call; {self.gateway_url} answered HTTP {status}: "
                f"{_excerpt(body)}"
            )
        return body

    async def mine(self, blocks: int = 1) -> None:
        """Mine `blocks` blocks now, confirming every pending transaction (arlocal only)."""
        await self._arlocal(f"/mine/{int(blocks)}", "mine")

    async def fund(self, winston: int) -> None:
        """Credit the wallet with `winston` (arlocal only: its /mint)."""
        wallet = self._require_wallet("fund")
        await self._arlocal(f"/mint/{wallet.address}/{int(winston)}", "fund")


def verify(tx: Transaction, tx_id: str, *, gateway: str = "") -> None:
    """Raise TransactionIntegrityError unless `tx` is the transaction `tx_id` as its owner signed it."""
    where = f" from {gateway}" if gateway else ""

    def fail(problem: str) -> TransactionIntegrityError:
        return TransactionIntegrityError(
            f"Arweave transaction {tx_id}{where} does not verify: {problem}", tx_id=tx_id
        )

    if tx.format != 2:
        raise fail(f"format {tx.format}; only format-2 transactions are read")
    if tx.id != tx_id:
        raise fail(f"its signature hashes to id {tx.id or '(no signature)'}")
    if len(tx.data) != tx.data_size:
        raise fail(f"{len(tx.data)} bytes of data where data_size says {tx.data_size}")
    if data_root(tx.data) != tx.data_root:
        raise fail("its data does not hash to its data_root (the data was altered)")
    if not verify_signature(tx.owner, tx.signature_data(), tx.signature):
        raise fail(f"the signature does not match its fields and owner {tx.owner_address}")

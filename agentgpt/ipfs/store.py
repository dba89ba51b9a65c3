"""Content stores: where checkpoint bytes live, addressed by CIDs we compute ourselves.

Two implementations of one `ContentStore` protocol, giving identical CIDs for identical bytes:

* `KuboStore` talks to a Kubo RPC API (production: Kubo; local/tests: the js-ipfs node in
  tools/ipfs-node) through aioipfs. It never trusts the node: put() checks the node's CID against the
  locally computed one, get() checks the bytes against the CID asked for. Every call has a client-side
  timeout; connection failures are retried a bounded number of times with backoff; everything else
  surfaces as `Unavailable` (retryable) naming the endpoint and the operation.
* `EmbeddedStore` is a directory of blocks named by CID, used when no IPFS endpoint is configured
  (docs/design.md §8) so a single process still has content-addressed, verifiable checkpoints.

`put(data, "raw")` stores opaque bytes as a UnixFS file (`ipfs add --cid-version=1 --raw-leaves
--chunker=size-262144`): a raw CID up to 256 KiB, a dag-pb root above (see agentgpt.ipfs.cid).
`put(data, "dag-cbor")` stores one canonical dag-cbor block (at most 1 MiB, Kubo's block limit).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

import aiohttp
import aioipfs
import dag_cbor
from dag_cbor.encoding.err import CBORError
from yarl import URL

from agentgpt.errors import InvalidArgument, Unavailable
from agentgpt.ipfs.cid import CODECS, MAX_BLOCK_SIZE, Codec, codec_of, compute_cid, normalize, verify
from agentgpt.ipfs.errors import CidMismatchError, ContentNotFound
from agentgpt.runtime.config import ConfigError, load, setting

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class IpfsConfig:
    """Where checkpoints are stored (AGENTGPT_IPFS_*)."""

    ipfs_api: str = setting(
        "",
        "Kubo RPC API of the IPFS node: multiaddr (/ip4/127.0.0.1/tcp/5001) or URL (http://ipfs:5001); "
        "empty = embedded content-addressed store in AGENTGPT_IPFS_EMBEDDED_DIR",
    )
    ipfs_timeout: float = setting(10.0, "Seconds one IPFS RPC call may take before it fails as UNAVAILABLE")
    ipfs_embedded_dir: str = setting(
        ".agentgpt/ipfs", "Directory of the embedded block store (used only when AGENTGPT_IPFS_API is empty)"
    )
    ipfs_retries: int = setting(
        3, "Extra attempts, with exponential backoff, when the IPFS node is unreachable"
    )


@runtime_checkable
class ContentStore(Protocol):
    """Content-addressed storage. All CIDs returned are CIDv1 base32 and computed locally."""

    @property
    def endpoint(self) -> str:
        """Human-readable location, for logs and error messages."""
        ...

    async def put(self, data: bytes, codec: Codec = "raw") -> str:
        """Store and pin `data`; return its CID. Idempotent."""
        ...

    async def get(self, cid: str) -> bytes:
        """The verified bytes of `cid` (ContentNotFound if absent, CidMismatchError if corrupt)."""
        ...

    async def pin(self, cid: str) -> None:
        """Keep `cid` (recursively) from garbage collection."""
        ...

    async def has(self, cid: str) -> bool:
        """Whether the store holds `cid` locally."""
        ...

    async def probe(self) -> str:
        """Health check: a short description of the backend, or Unavailable."""
        ...

    async def close(self) -> None: ...


def _check_payload(data: bytes, codec: Codec, *, decode_check: bool = True) -> None:
    """Refuse what no store should hold. `decode_check=False` skips re-decoding dag-cbor where a node will
    decode it anyway (dag/put) and the CID comparison catches any non-canonical encoding."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgument("data", f"must be bytes, not {type(data).__name__}")
    if codec not in CODECS:
        raise InvalidArgument("codec", f"unsupported codec {codec!r}; use one of {', '.join(CODECS)}")
    if codec == "dag-cbor":
        if len(data) > MAX_BLOCK_SIZE:
            raise InvalidArgument(
                "data",
                f"dag-cbor block of {len(data)} bytes exceeds the {MAX_BLOCK_SIZE}-byte block limit; store it as raw",
            )
        if not decode_check:
            return
        try:
            dag_cbor.decode(bytes(data))
        except (CBORError, ValueError) as exc:
            raise InvalidArgument("data", f"not canonical dag-cbor: {str(exc).splitlines()[0]}") from None


# ====================================================================== Kubo RPC
_NOT_FOUND_MARKERS = ("not found", "enoent", "no such file", "could not find", "not have")


def _parse_api(api: str) -> URL:
    """Kubo RPC base URL from a multiaddr (/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/http|/https]) or an
    http(s) URL (a trailing /api/v0 is accepted and dropped; without a port, the scheme's default)."""
    api = api.strip()
    if api.startswith("/"):
        parts = [p for p in api.split("/") if p]
        host, port, scheme = None, None, "http"
        i = 0
        while i < len(parts):
            proto = parts[i]
            if proto in ("ip4", "ip6", "dns", "dns4", "dns6") and i + 1 < len(parts):
                host, i = parts[i + 1], i + 2
            elif proto == "tcp" and i + 1 < len(parts) and parts[i + 1].isdigit():
                port, i = int(parts[i + 1]), i + 2
            elif proto in ("http", "https"):
                scheme, i = proto, i + 1
            else:
                raise ConfigError(f"AGENTGPT_IPFS_API={api!r}: unsupported multiaddr component {proto!r}")
        if host is None or port is None:
            raise ConfigError(f"AGENTGPT_IPFS_API={api!r}: multiaddr needs a host and /tcp/<port>")
        return URL.build(scheme=scheme, host=host, port=port)
    url = URL(api if "://" in api else f"http://{api}")
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"AGENTGPT_IPFS_API={api!r}: expected a multiaddr or an http(s)://host:port URL")
    return URL.build(scheme=url.scheme, host=url.host, port=url.port)  # no port: the scheme's default


class KuboStore:
    """A ContentStore on a Kubo RPC API endpoint (see the module doc for the guarantees)."""

    def __init__(self, api: str, *, timeout: float = 10.0, retries: int = 3, backoff: float = 0.1) -> None:
        self.api = api
        self.base_url = _parse_api(api)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._client: aioipfs.AsyncIPFS | None = None

    @property
    def endpoint(self) -> str:
        return str(self.base_url)

    def __repr__(self) -> str:
        return f"KuboStore({self.endpoint})"

    # ------------------------------------------------------------ plumbing
    def _ipfs(self) -> aioipfs.AsyncIPFS:
        # Created lazily: aioipfs binds its aiohttp session to the running loop at construction.
        if self._client is None:
            url = self.base_url
            self._client = aioipfs.AsyncIPFS(host=url.host, port=url.port, scheme=url.scheme)
        return self._client

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]], *, cid: str | None = None) -> T:
        """Run one RPC with a timeout; retry only connection failures; map every failure to a domain error."""
        attempts = self.retries + 1
        last: BaseException | None = None
        for attempt in range(attempts):
            try:
                return await asyncio.wait_for(fn(), self.timeout)
            except TimeoutError:
                # Not retried: a slow node stays slow, and callers need a bounded wait.
                raise Unavailable(
                    f"IPFS {what} at {self.endpoint} timed out after {self.timeout:g}s (AGENTGPT_IPFS_TIMEOUT): "
                    "the node is overloaded, or is searching the network for content it does not hold"
                ) from None
            except aioipfs.RPCAccessDenied as exc:
                raise Unavailable(
                    f"IPFS node at {self.endpoint} denied {what}: {exc}; check the API's auth"
                ) from None
            except aioipfs.APIError as exc:
                message = str(exc.message or type(exc).__name__)
                if cid is not None and any(m in message.lower() for m in _NOT_FOUND_MARKERS):
                    raise ContentNotFound(
                        f"IPFS node at {self.endpoint} does not have {cid} ({what}: {message})", cid=cid
                    ) from None
                raise Unavailable(
                    f"IPFS node at {self.endpoint} failed {what}: HTTP {exc.http_status}: {message}"
                ) from None
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError) as exc:
                last = exc
                if attempt + 1 < attempts:
                    await asyncio.sleep(self.backoff * 2**attempt)
        raise Unavailable(
            f"IPFS node at {self.endpoint} unreachable for {what} after {attempts} attempts "
            f"({type(last).__name__}: {last}); is the node running and does AGENTGPT_IPFS_API={self.api!r} "
            "point at its RPC API?"
        )

    async def _rpc(
        self, path: str, params: dict[str, str], form: Callable[[], aiohttp.FormData] | None = None
    ) -> Any:
        """POST /api/v0/<path> on the client's own session and decode the JSON answer. Used where aioipfs
        either swallows connection errors (its fetch_json returns None) or breaks on aiohttp>=3.12.1
        (dag.put/block.put), so errors stay visible and uniform."""
        client = self._ipfs()
        data = form() if form is not None else None
        async with client.session.post(
            client.api_endpoint(path), params=params, data=data, auth=client.auth
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                try:
                    message = json.loads(body).get("Message", "")
                except (ValueError, AttributeError):
                    message = body[:200].decode(errors="replace")
                raise aioipfs.APIError(
                    code=-1, message=message or f"HTTP {resp.status}", http_status=resp.status
                )
            return json.loads(body)

    # ------------------------------------------------------------ ContentStore
    async def put(self, data: bytes, codec: Codec = "raw") -> str:
        _check_payload(data, codec, decode_check=False)
        data = bytes(data)
        expected = compute_cid(data, codec)
        if codec == "raw":

            async def add() -> str:
                answer = await self._ipfs().core.add_bytes(
                    data, cid_version=1, raw_leaves=True, chunker="size-262144", hash="sha2-256", pin=True
                )
                return str(answer["Hash"])

            got = await self._call(f"add ({len(data)} bytes)", add)
        else:

            def form() -> aiohttp.FormData:
                fd = aiohttp.FormData()
                fd.add_field("file", data, filename="block", content_type="application/octet-stream")
                return fd

            params = {"input-codec": "dag-cbor", "store-codec": "dag-cbor", "hash": "sha2-256", "pin": "true"}

            async def dag_put() -> str:
                answer = await self._rpc("dag/put", params, form)
                return str(answer["Cid"]["/"])

            got = await self._call(f"dag/put ({len(data)} bytes)", dag_put)
        actual = normalize(got)
        if actual != expected:
            raise CidMismatchError(
                f"IPFS node at {self.endpoint} stored {len(data)} bytes ({codec}) as {actual}, "
                f"but they hash to {expected}; refusing the node's CID",
                expected=expected,
                actual=actual,
            )
        return expected

    async def get(self, cid: str) -> bytes:
        cid = normalize(cid)
        ipfs = self._ipfs()
        if codec_of(cid) == "dag-pb":
            # A UnixFS file: cat reassembles it; verify() rebuilds the tree to check every leaf and node.
            data = await self._call(f"cat {cid}", lambda: ipfs.core.cat(cid), cid=cid)
        else:
            data = await self._call(f"block/get {cid}", lambda: ipfs.block.get(cid), cid=cid)
        try:
            verify(cid, bytes(data))
        except CidMismatchError as exc:
            raise CidMismatchError(
                f"IPFS node at {self.endpoint} returned wrong content for {cid}: {exc.message}",
                expected=exc.expected,
                actual=exc.actual,
            ) from None
        return bytes(data)

    async def pin(self, cid: str) -> None:
        cid = normalize(cid)
        await self._call(
            f"pin/add {cid}", lambda: self._rpc("pin/add", {"arg": cid, "recursive": "true"}), cid=cid
        )

    async def has(self, cid: str) -> bool:
        """block/stat of the root block. An offline node answers at once; an online Kubo without the block
        searches the network until the timeout (then Unavailable), as it would for get()."""
        cid = normalize(cid)
        try:
            await self._call(f"block/stat {cid}", lambda: self._rpc("block/stat", {"arg": cid}), cid=cid)
        except ContentNotFound:
            return False
        return True

    async def probe(self) -> str:
        answer = await self._call("version", lambda: self._rpc("version", {}))
        return f"ipfs {answer.get('Version', '?')} at {self.endpoint}"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# ====================================================================== embedded
class EmbeddedStore:
    """A ContentStore in a local directory: one file per CID under <dir>/blocks, written atomically.

    Same CIDs as a node for the same (data, codec); nothing is ever garbage-collected, so pin() only
    checks presence. File I/O runs in a worker thread to keep the event loop responsive."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.blocks = self.directory / "blocks"

    @property
    def endpoint(self) -> str:
        return f"embedded:{self.directory}"

    def __repr__(self) -> str:
        return f"EmbeddedStore({self.directory})"

    def _path(self, cid: str) -> Path:
        return self.blocks / normalize(cid)

    def _write(self, path: Path, data: bytes) -> None:
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, data: bytes, codec: Codec = "raw") -> str:
        _check_payload(data, codec)
        data = bytes(data)
        cid = compute_cid(data, codec)
        try:
            await asyncio.to_thread(self._write, self._path(cid), data)
        except OSError as exc:
            raise Unavailable(f"embedded IPFS store {self.directory}: cannot write {cid}: {exc}") from None
        return cid

    async def get(self, cid: str) -> bytes:
        cid = normalize(cid)
        try:
            data = await asyncio.to_thread(self._path(cid).read_bytes)
        except FileNotFoundError:
            raise ContentNotFound(
                f"embedded IPFS store {self.directory} does not have {cid}", cid=cid
            ) from None
        except OSError as exc:
            raise Unavailable(f"embedded IPFS store {self.directory}: cannot read {cid}: {exc}") from None
        verify(cid, data)
        return data

    async def pin(self, cid: str) -> None:
        if not await self.has(cid):
            cid = normalize(cid)
            raise ContentNotFound(f"embedded IPFS store {self.directory} does not have {cid}", cid=cid)

    async def has(self, cid: str) -> bool:
        return await asyncio.to_thread(self._path(cid).is_file)

    async def probe(self) -> str:
        def check() -> None:
            self.blocks.mkdir(parents=True, exist_ok=True)
            if not os.access(self.blocks, os.W_OK):
                raise PermissionError(f"{self.blocks} is not writable")

        try:
            await asyncio.to_thread(check)
        except OSError as exc:
            raise Unavailable(f"embedded IPFS store {self.directory} unusable: {exc}") from None
        return f"embedded store at {self.directory}"

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def open_store(config: IpfsConfig | None = None) -> KuboStore | EmbeddedStore:
    """The store the configuration asks for (AGENTGPT_IPFS_API set: Kubo, else embedded)."""
    config = load(IpfsConfig) if config is None else config
    if config.ipfs_timeout <= 0:
        raise ConfigError(f"AGENTGPT_IPFS_TIMEOUT={config.ipfs_timeout}: must be > 0")
    if config.ipfs_api.strip():
        return KuboStore(config.ipfs_api, timeout=config.ipfs_timeout, retries=config.ipfs_retries)
    return EmbeddedStore(config.ipfs_embedded_dir)

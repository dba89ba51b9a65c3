"""`Archiver`: what the services post their archive copies through (the session service's completed event
logs, the executors' reports and filings): one gateway and its wallet, as configured by `ArchiveConfig`.

Three things on top of ArweaveClient.post:

- **Reuse before posting.** A copy already on the gateway under the same tags, signed by this wallet, with
  the same bytes (read back verified) is answered instead of posting a second one: a completion or a task
  retried after a failure that came after its post archives its bytes once. Gateways index a transaction
  for search once it is mined (arlocal: at once), so a retry before that may still post a second, equal
  copy; readers take the first.
- **Mining on arlocal.** arlocal mines only when asked; with AGENTGPT_ARWEAVE_MINE (set by the local
  stack, never for a real gateway) every post is followed by a mined block, so what was posted can be
  read back at once. The gateway is never sniffed for it.
- **A bounded wait.** `post(..., window=s)` keeps retrying an unreachable gateway (UNAVAILABLE) with
  backoff for at most `s` seconds in all, then raises Unavailable saying so. A gateway that refuses the
  transaction (an unfunded wallet, a malformed request) is not retried: a person has to act.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping

from agentgpt.arweave.client import ArweaveClient, ArweaveConfig, open_client
from agentgpt.arweave.errors import (
    TransactionIntegrityError,
    TransactionNotFound,
    TransactionPending,
    WalletError,
)
from agentgpt.errors import Unavailable
from agentgpt.runtime.config import ConfigError, setting

log = logging.getLogger("agentgpt.arweave")

#: Copies under the same tags a post looks through before posting its own (they are few: the tags name
#: the session, the chain, the seq and the kind).
REUSE_CANDIDATES = 10
#: Longest pause, seconds, between two attempts of one windowed post.
BACKOFF_CAP = 4.0


@dataclasses.dataclass(frozen=True)
class ArchiveConfig(ArweaveConfig):
    """ArweaveConfig, and whether the gateway needs to be told to mine (AGENTGPT_ARWEAVE_*)."""

    arweave_mine: bool = setting(
        False,
        "Mine a block after each post: the gateway is arlocal, which mines only when asked (the local "
        "stack sets it). Never for a real gateway",
    )


def open_archiver(config: ArchiveConfig) -> Archiver | None:
    """The archiver the configuration asks for; None when no gateway is configured. A gateway without a
    usable wallet is a configuration error (the services post, they do not only read)."""
    try:
        client = open_client(config)
    except WalletError as exc:
        raise ConfigError(
            f"AGENTGPT_ARWEAVE_WALLET_PATH: {exc}. Mount the wallet (a JWK) there, or unset "
            "AGENTGPT_ARWEAVE_GATEWAY to archive to IPFS only"
        ) from None
    if client is None:
        return None
    if client.wallet is None:
        raise ConfigError(
            f"AGENTGPT_ARWEAVE_GATEWAY is {config.arweave_gateway!r} but AGENTGPT_ARWEAVE_WALLET_PATH is "
            "empty: posting archive copies needs the wallet that pays for them. Set it, or unset the gateway "
            "to archive to IPFS only"
        )
    return Archiver(client, mine=config.arweave_mine)


class Archiver:
    """Posts archive copies to one gateway with one wallet. `close()` when done."""

    def __init__(self, client: ArweaveClient, *, mine: bool = False, backoff: float = 0.25) -> None:
        if client.wallet is None:
            raise ValueError("an Archiver posts: its client needs a wallet")
        self.client = client
        self.mine = mine
        self.backoff = backoff

    @property
    def gateway_url(self) -> str:
        return self.client.gateway_url

    @property
    def address(self) -> str:
        """The wallet's address: the owner of every copy this archiver posts."""
        assert self.client.wallet is not None
        return self.client.wallet.address

    def __repr__(self) -> str:
        return f"Archiver({self.gateway_url}, wallet={self.address}, mine={self.mine})"

    async def close(self) -> None:
        await self.client.close()

    async def post(self, data: bytes, tags: Mapping[str, str], *, window: float = 0.0) -> str:
        """The id of a transaction holding `data` under `tags` (see archive_tags): one posted earlier by this
        wallet, or a new one. With `window` > 0, an unreachable gateway is retried with backoff until
        `window` seconds have passed in all (the last attempt included); then, and without a window at
        once, Unavailable."""
        if window <= 0:
            return await self._post_once(data, tags)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        delay = self.backoff
        attempts = 0
        try:
            async with asyncio.timeout(window):
                while True:
                    attempts += 1
                    try:
                        return await self._post_once(data, tags)
                    except Unavailable as exc:
                        pause = min(delay, BACKOFF_CAP, deadline - loop.time())
                        if pause <= 0:
                            raise Unavailable(
                                f"{exc.message} (still failing after {attempts} attempts in {window:g} s)"
                            ) from None
                        log.warning("%s; posting again in %.2f s", exc, pause)
                        await asyncio.sleep(pause)
                        delay *= 2
        except TimeoutError:
            raise Unavailable(
                f"Arweave gateway {self.gateway_url} did not take the archive copy within {window:g} s "
                f"({attempts} attempts); is it running?"
            ) from None

    async def _post_once(self, data: bytes, tags: Mapping[str, str]) -> str:
        tx_id = await self._posted_before(data, tags) or await self.client.post(data, tags)
        if self.mine:
            await self.client.mine()
        return tx_id

    async def _posted_before(self, data: bytes, tags: Mapping[str, str]) -> str | None:
        """A transaction under `tags` that this wallet signed over exactly `data`, if the gateway finds one.
        Anyone can post under any tags, so the owner and the bytes are checked, on the verified copy."""
        for tx_id in await self.client.find(tags, limit=REUSE_CANDIDATES):
            try:
                tx = await self.client.read(tx_id)
            except (TransactionPending, TransactionNotFound):
                continue  # not servable yet: posting an equal copy is harmless
            except TransactionIntegrityError as exc:
                log.warning("ignoring a copy that does not verify: %s", exc)
                continue
            if tx.owner_address == self.address and tx.data == data:
                return tx_id
        return None

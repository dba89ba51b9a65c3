"""On-chain execution with exactly-once effects (docs/design.md §5).

TxSender sends one logical transaction from the executor's key:

1. nonce from a local nonce manager (seeded from the node's pending count, reset after any doubt),
   gas from eth_estimateGas (+25%), EIP-1559 fees from the plan (gas_optimizer) or eth_feeHistory;
2. the transaction is signed and its intent (chain, nonce, keccak of the raw tx, the raw tx) is handed
   to the journal, which must make it durable (ReportTask RUNNING) BEFORE anything is broadcast;
3. broadcast, then wait for the receipt and the configured confirmations, re-checking the receipt
   after the wait (a reorg sends it back to waiting and the same raw transaction is rebroadcast);
4. a transaction not mined within `stuck_after` seconds is replaced: same nonce, same call, fees
   bumped by `bump_percent` (re-journaled first). Only one transaction per nonce can ever be mined.

After a crash, `resume(intents)` finds whichever recorded transaction was mined, or rebroadcasts the
recorded raw bytes: never a new, different transaction for the same step.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.exceptions import TransactionNotFound, Web3RPCError

from agentgpt.chain.rpc import connect
from agentgpt.contracts import CONTRACT_NAMES, load_artifact
from agentgpt.network import Network
from services.executor.plan import Fees

log = logging.getLogger("agentgpt.executor.chain")

MIN_TIP = 10**6


def signer_of(intent: TxIntentRecord) -> str:
    """The address that signed a recorded transaction ("" when the bytes do not decode)."""
    try:
        return str(Account.recover_transaction(intent.raw_tx))
    except Exception:
        return ""


@dataclass(frozen=True)
class TxIntentRecord:
    chain_id: int
    nonce: int
    tx_hash: bytes
    raw_tx: bytes


Journal = Callable[[TxIntentRecord], Awaitable[None]]


@dataclass(frozen=True)
class TxResult:
    tx_hash: bytes
    nonce: int
    block_number: int
    gas_used: int
    effective_gas_price: int
    status: int
    intents: tuple[TxIntentRecord, ...] = ()
    logs: tuple[Any, ...] = field(default=(), compare=False)


class TxError(Exception):
    """A transaction could not be done; `reason` is fit for a task's error field."""


class TxReverted(TxError):
    pass


class TxConflict(TxError):
    """The nonce was consumed by a transaction we have no record of (another process uses the key)."""


def _custom_errors() -> dict[str, tuple[str, list[str]]]:
    """'0x12345678' -> (error name, argument types) over our contracts' ABIs."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name in CONTRACT_NAMES:
        for item in load_artifact(name).abi:
            if item["type"] == "error":
                types = [str(i["type"]) for i in item["inputs"]]
                out["0x" + keccak(text=f"{item['name']}({','.join(types)})")[:4].hex()] = (
                    item["name"],
                    types,
                )
    return out


def explain_revert(exc: Exception) -> str:
    """A revert as 'ErrorName(arg, ...)' when its data is one of our contracts' custom errors."""
    text = str(exc)
    for data in re.findall(r"0x[0-9a-fA-F]{8,}", text):
        known = _ERRORS().get(data[:10].lower())
        if known is None:
            continue
        name, types = known
        try:
            args = abi_decode(types, bytes.fromhex(data[10:]))
        except Exception:
            return name
        shown = ["0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args]
        return f"{name}({', '.join(shown)})"
    return text[:300]


_ERRORS = cache(_custom_errors)


def _is(exc: Exception, *needles: str) -> bool:
    text = str(exc).lower()
    return any(n in text for n in needles)


class TxSender:
    def __init__(
        self,
        w3: AsyncWeb3[Any],
        private_key: str,
        chain_id: int,
        *,
        confirmations: int = 1,
        poll_interval: float = 0.1,
        stuck_after: float = 30.0,
        bump_percent: int = 20,
        receipt_timeout: float = 300.0,
    ) -> None:
        self.w3 = w3
        self.account: LocalAccount = Account.from_key(private_key)
        self.address = self.account.address
        self.chain_id = chain_id
        self.confirmations = max(1, confirmations)
        self.poll_interval = poll_interval
        self.stuck_after = stuck_after
        self.bump_percent = max(10, bump_percent)  # nodes refuse replacements bumped by less than 10%
        self.receipt_timeout = receipt_timeout
        self._lock = asyncio.Lock()
        self._nonce: int | None = None

    # ------------------------------------------------------------------ public
    async def send(
        self,
        *,
        to: str,
        data: bytes = b"",
        value: int = 0,
        journal: Journal,
        fees: Fees | None = None,
        gas: int | None = None,
    ) -> TxResult:
        # One logical transaction at a time per key: nonces stay gap-free and a replacement never races.
        async with self._lock:
            tx: dict[str, Any] = {
                "chainId": self.chain_id,
                "from": self.address,
                "to": to_checksum_address(to),
                "value": value,
                "data": data,
            }
            if gas is None:
                try:
                    estimate = await self.w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
                except Exception as exc:
                    # Nothing was recorded or sent: the step fails cleanly, no nonce consumed.
                    raise TxReverted(f"transaction would revert: {explain_revert(exc)}") from None
                gas = estimate * 5 // 4 + 10_000
            if fees is None:
                fees = await self.suggest_fees()
            if self._nonce is None:
                self._nonce = await self.w3.eth.get_transaction_count(self.address, "pending")
            tx.update(
                nonce=self._nonce,
                gas=gas,
                maxFeePerGas=fees.max_fee_per_gas,
                maxPriorityFeePerGas=fees.max_priority_fee_per_gas,
                type=2,
            )
            tx.pop("from")
            intent = self._sign(tx)
            await journal(intent)  # durable before broadcast
            self._nonce += 1
            try:
                return await self._drive(tx, [intent], journal)
            except BaseException:
                self._nonce = None  # re-read from the node next time
                raise

    async def resume(self, intents: Sequence[TxIntentRecord], journal: Journal) -> TxResult:
        """Finish a step recorded before a crash: its mined receipt, or the same raw tx rebroadcast."""
        if not intents:
            raise ValueError("no intents to resume")
        nonce, signer = intents[-1].nonce, signer_of(intents[-1])
        same = [i for i in intents if i.nonce == nonce and signer_of(i) == signer]
        if signer and signer.lower() != self.address.lower():
            # Signed by the session's previous executor: wait for it (rebroadcasting the same bytes) and
            # read its nonce, never ours; it cannot be replaced (only its signer could).
            return await self._drive({}, list(same), journal, rebroadcast_first=True, sender=signer)
        async with self._lock:
            self._nonce = None
            try:
                tx = dict(TypedTransaction.from_bytes(HexBytes(same[-1].raw_tx)).as_dict())
            except Exception:
                tx = {}
            return await self._drive(tx, list(same), journal, rebroadcast_first=True)

    async def suggest_fees(self) -> Fees:
        hist = await self.w3.eth.fee_history(5, "latest", [50.0])
        base = int(hist["baseFeePerGas"][-1])
        rewards = sorted(int(r[0]) for r in hist.get("reward", []) if r and int(r[0]) > 0)
        tip = max(MIN_TIP, rewards[len(rewards) // 2] if rewards else 0)
        return Fees(max_fee_per_gas=2 * base + tip, max_priority_fee_per_gas=tip, base_fee=base)

    # ------------------------------------------------------------------ internals
    def _sign(self, tx: dict[str, Any]) -> TxIntentRecord:
        signed = self.account.sign_transaction(tx)
        raw = bytes(signed.raw_transaction)
        return TxIntentRecord(self.chain_id, int(tx["nonce"]), keccak(raw), raw)

    async def _broadcast(self, intent: TxIntentRecord) -> None:
        try:
            await self.w3.eth.send_raw_transaction(intent.raw_tx)
        except Web3RPCError as exc:
            if _is(exc, "already known", "already imported", "known transaction"):
                return
            if _is(exc, "nonce too low", "nonce has already been used"):
                return  # one of ours may already be mined; _drive decides
            # The node refused it (funds, fee cap, ...): it can never be mined as signed.
            raise TxError(f"the node refused transaction 0x{intent.tx_hash.hex()}: {exc}") from None

    async def _receipt(self, tx_hash: bytes) -> Any | None:
        try:
            return await self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None

    async def _mined(self, intents: Sequence[TxIntentRecord]) -> tuple[TxIntentRecord, Any] | None:
        for intent in reversed(intents):
            receipt = await self._receipt(intent.tx_hash)
            if receipt is not None and receipt.get("blockNumber") is not None:
                return intent, receipt
        return None

    async def _drive(
        self,
        tx: dict[str, Any],
        intents: list[TxIntentRecord],
        journal: Journal,
        *,
        rebroadcast_first: bool = False,
        sender: str = "",
    ) -> TxResult:
        if rebroadcast_first:
            if await self._mined(intents) is None:
                await self._broadcast(intents[-1])
        else:
            await self._broadcast(intents[-1])
        sent_at = time.monotonic()
        deadline = time.monotonic() + self.receipt_timeout
        while time.monotonic() < deadline:
            found = await self._mined(intents)
            if found is not None:
                intent, receipt = found
                block = int(receipt["blockNumber"])
                if await self.w3.eth.block_number < block + self.confirmations - 1:
                    await asyncio.sleep(self.poll_interval)  # not enough confirmations yet
                    continue
                again = await self._receipt(intent.tx_hash)
                if again is None or int(again["blockNumber"]) != block:
                    log.warning("receipt of %s vanished (reorg); rebroadcasting", intent.tx_hash.hex())
                    await self._broadcast(intent)
                    continue
                result = TxResult(
                    intent.tx_hash,
                    intent.nonce,
                    block,
                    int(again["gasUsed"]),
                    int(again.get("effectiveGasPrice", 0)),
                    int(again["status"]),
                    tuple(intents),
                    tuple(again.get("logs", ())),
                )
                if result.status != 1:
                    raise TxReverted(f"transaction 0x{intent.tx_hash.hex()} reverted in block {block}")
                return result
            owner = sender or self.address
            count = await self.w3.eth.get_transaction_count(to_checksum_address(owner), "latest")
            if count > intents[-1].nonce and await self._mined(intents) is None:
                raise TxConflict(
                    f"nonce {intents[-1].nonce} of {owner} was used by a transaction this executor "
                    "did not record (is the key shared?)"
                )
            if tx and time.monotonic() - sent_at > self.stuck_after:
                intents.append(await self._replace(tx, journal))
                sent_at = time.monotonic()
            await asyncio.sleep(self.poll_interval)
        raise TxError(f"no receipt for nonce {intents[-1].nonce} within {self.receipt_timeout}s")

    async def _replace(self, tx: dict[str, Any], journal: Journal) -> TxIntentRecord:
        tip = max(MIN_TIP, int(tx["maxPriorityFeePerGas"]) * (100 + self.bump_percent) // 100 + 1)
        max_fee = int(tx["maxFeePerGas"]) * (100 + self.bump_percent) // 100 + 1
        base = int((await self.w3.eth.get_block("pending"))["baseFeePerGas"])
        tx["maxPriorityFeePerGas"] = tip
        tx["maxFeePerGas"] = max(max_fee, 2 * base + tip)
        intent = self._sign(tx)
        log.info(
            "replacing stuck nonce %d with higher fees",
            intent.nonce,
            extra={"tx_hash": intent.tx_hash.hex(), "max_fee": tx["maxFeePerGas"]},
        )
        await journal(intent)
        await self._broadcast(intent)
        return intent


# ---------------------------------------------------------------------- chains


@dataclass
class ChainHandle:
    name: str
    chain_id: int
    w3: AsyncWeb3[Any]
    sender: TxSender
    contracts: dict[str, str]

    def contract(self, name: str, address: str | None = None) -> Any:
        return self.w3.eth.contract(
            address=to_checksum_address(address or self.contracts[name]), abi=load_artifact(name).abi
        )


class ChainSet:
    """Every chain of the network manifest, with one TxSender each (the executor's key). A FeeSource."""

    def __init__(self, network: Network, private_key: str, **sender_options: Any) -> None:
        self.network = network
        self.chains: dict[str, ChainHandle] = {}
        for info in network.chains:
            w3 = connect(info.rpc_url)
            opts = {"confirmations": max(1, info.confirmations), **sender_options}
            handle = ChainHandle(
                info.name,
                info.chain_id,
                w3,
                TxSender(w3, private_key, info.chain_id, **opts),
                dict(info.contracts),
            )
            self.chains[info.name] = handle
            self.chains[str(info.chain_id)] = handle

    def get(self, key: str | int) -> ChainHandle:
        try:
            return self.chains[str(key)]
        except KeyError:
            raise KeyError(
                f"unknown chain {key!r}; the network manifest has {', '.join(c.name for c in self.network.chains)}"
            ) from None

    @property
    def home(self) -> ChainHandle:
        return self.get(self.network.home.name)

    async def fee_history(self, chain: str, blocks: int, percentile: float) -> tuple[list[int], list[int]]:
        hist = await self.get(chain or self.network.home.name).w3.eth.fee_history(
            blocks, "latest", [percentile]
        )
        return [int(b) for b in hist["baseFeePerGas"]], [int(r[0]) for r in hist.get("reward", []) if r]

    async def close(self) -> None:
        seen = set()
        for handle in self.chains.values():
            if id(handle) in seen:
                continue
            seen.add(id(handle))
            provider = handle.w3.provider
            disconnect = getattr(provider, "disconnect", None)
            if disconnect is not None:
                try:
                    await disconnect()
                except Exception:
                    log.debug("closing the provider of %s failed", handle.name, exc_info=True)

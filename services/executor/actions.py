"""Runs a plan's actions: reads, IPFS publishing, and transactions through the session's account.

Every on-chain action is a call of SessionAccount.execute(taskSeq, step, target, value, data) sent by
the executor (the account's guard on the factory checks the executor is assigned and the call is
allowlisted), so the treasury's funds never sit with the executor. `(taskSeq, step)` — the task and the
index of the action in its plan — makes the effect exactly-once on chain: the account refuses a step that
already ran, whoever sends it. Transactions go through TxSender, whose journal
callback makes each intent durable before broadcast.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from eth_utils.address import to_checksum_address
from web3.exceptions import BadFunctionCallOutput, ContractLogicError

from agentgpt.arweave import archive_tags
from agentgpt.arweave.archiver import Archiver
from agentgpt.canonical import canonical_json_ascii
from agentgpt.contracts import load_artifact
from agentgpt.filing import (
    CONTENT_TYPE,
    FORM,
    KIND,
    Holding,
    exact_decimal,
    information_table,
    table_value_total,
)
from agentgpt.ipfs import ContentStore
from agentgpt.policies import policies_of
from services.executor.plan import Action, Plan, PlanRejected
from services.executor.transactions import ChainSet, Journal, TxIntentRecord, TxResult, TxReverted, signer_of

# Minimal ABIs of the Uniswap V2 / ERC-20 functions the actions use (the full artifacts live in npm
# packages that an executor image does not carry).
PAIR_ABI = [
    {
        "name": "getReserves",
        "type": "function",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [
            {"name": "reserve0", "type": "uint112"},
            {"name": "reserve1", "type": "uint112"},
            {"name": "blockTimestampLast", "type": "uint32"},
        ],
    },
    {
        "name": "token0",
        "type": "function",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "address"}],
    },
    {
        "name": "token1",
        "type": "function",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "address"}],
    },
]
ROUTER_ABI = [
    {
        "name": "getAmountsOut",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "amountIn", "type": "uint256"}, {"name": "path", "type": "address[]"}],
        "outputs": [{"name": "amounts", "type": "uint256[]"}],
    },
    {
        "name": "swapExactETHForTokens",
        "type": "function",
        "stateMutability": "payable",
        "inputs": [
            {"name": "amountOutMin", "type": "uint256"},
            {"name": "path", "type": "address[]"},
            {"name": "to", "type": "address"},
            {"name": "deadline", "type": "uint256"},
        ],
        "outputs": [{"name": "amounts", "type": "uint256[]"}],
    },
]
ERC20_ABI = [
    {
        "name": "balanceOf",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
]
# The optional ERC-20 metadata the filing names a token by (a token without it is still filed).
ERC20_METADATA_ABI = [
    {
        "name": name,
        "type": "function",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": kind}],
    }
    for name, kind in (("name", "string"), ("symbol", "string"), ("decimals", "uint8"))
]
SWAP_DEADLINE_S = 1800
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Step:
    """Which effect an action is: action `index` of task `task_seq`'s plan (its on-chain identity)."""

    task_seq: int
    index: int


@dataclass
class ActionOutcome:
    result: dict[str, Any]
    txs: list[TxResult] = field(default_factory=list)

    @property
    def gas_used(self) -> int:
        return sum(t.gas_used for t in self.txs)

    @property
    def gas_cost_wei(self) -> int:
        return sum(t.gas_used * t.effective_gas_price for t in self.txs)


class ActionRunner:
    def __init__(
        self, chains: ChainSet | None, store: ContentStore | None, arweave: Archiver | None = None
    ) -> None:
        self.chains = chains
        self.store = store
        self.arweave = arweave  # where reports and filings are also archived (None: IPFS only)
        self._accounts: dict[tuple[str, str], str] = {}

    def _chains(self) -> ChainSet:
        if self.chains is None:
            raise PlanRejected("this executor has no chains configured (AGENTGPT_NETWORK)", by="executor")
        return self.chains

    async def resume(self, intents: Sequence[TxIntentRecord], journal: Journal) -> TxResult:
        """Finish the transaction a previous attempt of a step recorded (`intents`, on the home chain, where
        on-chain actions run): its mined receipt, or the same raw transaction rebroadcast; never a new one."""
        return await self._chains().home.sender.resume(intents, journal)

    async def redo_allowed(self, session_id: str, step: Step, intents: Sequence[TxIntentRecord]) -> bool:
        """True when a step's recorded transaction reverted, was signed by another executor (the session's
        previous one, fenced out before it was mined) and the session's account never executed the step:
        the effect did not happen, so this executor may run the step with its own transaction."""
        signer = signer_of(intents[-1]) if intents else ""
        home = self._chains().home
        if not signer or signer.lower() == home.sender.address.lower():
            return False
        account = home.w3.eth.contract(
            address=to_checksum_address(await self.account_of(session_id)),
            abi=load_artifact("SessionAccount").abi,
        )
        return not bool(await account.functions.executed(step.task_seq, step.index).call())

    async def account_of(self, session_id: str) -> str:
        """The session's SessionAccount address (on its home chain)."""
        chains = self._chains()
        key = (chains.home.name, session_id)
        if key not in self._accounts:
            factory = chains.home.contract("SessionFactory")
            self._accounts[key] = str(await factory.functions.accountOf(int(session_id)).call())
        return self._accounts[key]

    async def run(
        self,
        session_id: str,
        step: Step,
        action: Action,
        plan: Plan,
        memory: Mapping[str, Any],
        params: Mapping[str, Any],
        journal: Journal,
    ) -> ActionOutcome:
        p = action.params
        if action.kind == "note":
            return ActionOutcome({"note": dict(p)})
        if action.kind == "read_market":
            return ActionOutcome(await self._read_market(str(p["chain"]), str(p["pair"]), params))
        if action.kind == "publish_report":
            return ActionOutcome(await self._publish(session_id, step, str(p["title"]), memory, params))
        chains = self._chains()
        handle = chains.get(str(p["chain"]))
        if handle is not chains.home:
            raise PlanRejected(
                f"on-chain actions run on the home chain only, not {p['chain']}", by="executor"
            )
        account = await self.account_of(session_id)
        if action.kind == "swap_exact_eth_for_tokens":
            return await self._swap(step, account, action, plan, journal, params)
        target = str(p.get("to") or p.get("target"))
        value = int(p.get("value", 0))
        data = bytes.fromhex(str(p.get("data", "0x"))[2:])
        tx = await self._execute(step, account, target, value, data, plan, journal, params)
        return ActionOutcome({"target": target, "value": value, "tx_hash": "0x" + tx.tx_hash.hex()}, [tx])

    async def _execute(
        self,
        step: Step,
        account: str,
        target: str,
        value: int,
        data: bytes,
        plan: Plan,
        journal: Journal,
        params: Mapping[str, Any],
    ) -> TxResult:
        """SessionAccount.execute of the call, once its policy (if the spec gives one) allows it: a call the
        policy refuses, here or on chain (PolicyViolation), is a PlanRejected naming the rule."""
        selector = data[:4] if len(data) >= 4 else b"\x00" * 4
        policy = next(
            (p for p in policies_of(params) if p.target.lower() == target.lower() and p.selector == selector),
            None,
        )
        if policy is not None:
            rule = policy.check(account, value, data, time.time())
            if rule is not None:
                raise PlanRejected(_policy_refusal(target, selector, rule), by="policy")
        handle = self._chains().home
        acct = handle.w3.eth.contract(
            address=to_checksum_address(account), abi=load_artifact("SessionAccount").abi
        )
        calldata = acct.encode_abi(
            "execute", args=[step.task_seq, step.index, to_checksum_address(target), value, data]
        )
        try:
            return await handle.sender.send(
                to=account, data=bytes.fromhex(calldata[2:]), journal=journal, fees=plan.fees
            )
        except TxReverted as exc:
            found = re.search(r"PolicyViolation\([^)]*, ([a-z_]+)\)", str(exc))
            if found is None:
                raise
            raise PlanRejected(_policy_refusal(target, selector, found.group(1)), by="policy") from None

    async def _read_market(self, chain: str, pair: str, params: Mapping[str, Any]) -> dict[str, Any]:
        handle = self._chains().get(chain)
        c = handle.w3.eth.contract(address=to_checksum_address(pair), abi=PAIR_ABI)
        r0, r1, _ = await c.functions.getReserves().call()
        token0 = str(await c.functions.token0().call())
        token1 = str(await c.functions.token1().call())
        block = await handle.w3.eth.block_number
        out: dict[str, Any] = {
            "pair": pair,
            "token0": token0,
            "token1": token1,
            "reserve0": str(r0),
            "reserve1": str(r1),
            "block": block,
        }
        weth = str((params.get("market") or {}).get("weth", "")).lower()
        if weth and r0 and r1:
            eth_reserve, stable_reserve = (r0, r1) if token0.lower() == weth else (r1, r0)
            out["price"] = round(stable_reserve / eth_reserve, 6)  # stablecoin per ETH (same decimals)
        return out

    async def _swap(
        self,
        step: Step,
        account: str,
        action: Action,
        plan: Plan,
        journal: Journal,
        params: Mapping[str, Any],
    ) -> ActionOutcome:
        p = action.params
        handle = self._chains().home
        router = handle.w3.eth.contract(address=to_checksum_address(str(p["router"])), abi=ROUTER_ABI)
        path = [to_checksum_address(a) for a in p["path"]]
        balance = await handle.w3.eth.get_balance(to_checksum_address(account))
        amount_in = balance * int(p["fraction_bps"]) // 10_000
        if amount_in == 0:
            raise PlanRejected(f"the session account {account} holds no ETH to rebalance", by="executor")
        quoted = (await router.functions.getAmountsOut(amount_in, path).call())[-1]
        min_out = quoted * (10_000 - int(p["slippage_bps"])) // 10_000
        token_out = handle.w3.eth.contract(address=path[-1], abi=ERC20_ABI)
        before = await token_out.functions.balanceOf(to_checksum_address(account)).call()
        deadline = int(time.time()) + SWAP_DEADLINE_S
        swap = router.encode_abi(
            "swapExactETHForTokens", args=[min_out, path, to_checksum_address(account), deadline]
        )
        tx = await self._execute(
            step, account, str(p["router"]), amount_in, bytes.fromhex(swap[2:]), plan, journal, params
        )
        after = await token_out.functions.balanceOf(to_checksum_address(account)).call()
        return ActionOutcome(
            {
                "amount_in_wei": str(amount_in),
                "quoted_out": str(quoted),
                "min_out": str(min_out),
                "received": str(after - before),
                "eth_before_wei": str(balance),
                "token_out": path[-1],
                "tx_hash": "0x" + tx.tx_hash.hex(),
            },
            [tx],
        )

    async def _publish(
        self,
        session_id: str,
        step: Step,
        title: str,
        memory: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The JSON holdings report and, when there are holdings (a chain), the same holdings as a Form
        13F information table (agentgpt.filing): both on IPFS, their CIDs in the result. The table is
        for the audit trail and is not submitted anywhere (`"submitted": False`).

        With an Arweave gateway configured, the same bytes of each are also posted there (kinds "report"
        and "filing", tagged with the session, the home chain's id, 0 off chain, and the task's seq), each
        transaction id next to its CID (`"arweave_tx"`); without one the result has no such keys. A
        gateway that does not answer fails the attempt like IPFS down: the task is retried."""
        if self.store is None:
            raise PlanRejected("this executor has no IPFS store configured", by="executor")
        report: dict[str, Any] = {"session_id": session_id, "title": title, "results": dict(memory)}
        if self.chains is not None:
            handle = self.chains.home
            account = await self.account_of(session_id)
            holdings: dict[str, Any] = {
                "account": account,
                "eth_wei": str(await handle.w3.eth.get_balance(to_checksum_address(account))),
            }
            stable = (params.get("market") or {}).get("stable")
            if stable:
                token = handle.w3.eth.contract(address=to_checksum_address(str(stable)), abi=ERC20_ABI)
                holdings["stable"] = {
                    "token": stable,
                    "balance": str(await token.functions.balanceOf(to_checksum_address(account)).call()),
                }
            report["holdings"] = holdings
            report["block"] = await handle.w3.eth.block_number
        data = canonical_json_ascii(report, default=str).encode()
        cid = await self.store.put(data, "raw")
        out: dict[str, Any] = {"cid": cid, "size": len(data), "title": title}
        chain_id = self.chains.home.chain_id if self.chains is not None else 0
        if self.arweave is not None:
            out["arweave_tx"] = await self.arweave.post(
                data, archive_tags(kind="report", session_id=session_id, chain_id=chain_id, seq=step.task_seq)
            )
        if "holdings" in report:
            table, summary = await self._information_table(session_id, cid, report, memory, params)
            filing: dict[str, Any] = {"form": FORM, "cid": await self.store.put(table, "raw")}
            if self.arweave is not None:
                # the same bytes as on IPFS, tagged agentgpt.filing.KIND ("filing") and its CONTENT_TYPE
                filing["arweave_tx"] = await self.arweave.post(
                    table,
                    archive_tags(
                        kind=KIND,
                        session_id=session_id,
                        chain_id=chain_id,
                        seq=step.task_seq,
                        content_type=CONTENT_TYPE,
                    ),
                )
            out["filing"] = {**filing, "size": len(table), "submitted": False, **summary}
        return out

    async def _information_table(
        self,
        session_id: str,
        report_cid: str,
        report: Mapping[str, Any],
        memory: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> tuple[bytes, dict[str, Any]]:
        """The report's holdings (the same balances, at the same block) as a 13F information table, as
        of the UTC day of that block. ETH is valued at the stablecoin price analyze_market read (its
        pool reserves, exactly; else its rounded `price`), the stablecoin at 1 USD per token (its peg,
        not a market price); without an analyze_market result ETH is left unpriced (value 0, said so)."""
        handle = self._chains().home
        held = report["holdings"]
        block = int(report["block"])
        period = datetime.fromtimestamp(int((await handle.w3.eth.get_block(block))["timestamp"]), UTC).date()
        market = params.get("market") or {}
        stable = held.get("stable")
        name, symbol, decimals = "", "", 18
        rows: list[Holding] = []
        if stable:
            token = handle.w3.eth.contract(
                address=to_checksum_address(str(stable["token"])), abi=ERC20_METADATA_ABI
            )
            name = _printable(await _optional(token.functions.name().call(), ""), 60)
            symbol = _printable(await _optional(token.functions.symbol().call(), ""), 20)
            decimals = int(await _optional(token.functions.decimals().call(), 18))
        eth_usd, source = _eth_price(memory.get("analyze_market"), market, symbol, decimals)
        rows.append(
            Holding(
                f"ETHER (NATIVE COIN OF {handle.name.upper()}, CHAIN ID {handle.chain_id}; NO ISSUER)",
                "NATIVE COIN",
                amount=int(held["eth_wei"]),
                decimals=18,
                usd_per_unit=eth_usd,
                price_source=_comment_safe(source),
            )
        )
        if stable:
            label = " ".join(p for p in (name, f"({symbol})" if symbol else "") if p) or "UNNAMED TOKEN"
            rows.append(
                Holding(
                    f"{label}, ERC-20 TOKEN {to_checksum_address(str(stable['token']))} "
                    f"ON CHAIN ID {handle.chain_id}",
                    "ERC-20 TOKEN",
                    amount=int(stable["balance"]),
                    decimals=decimals,
                    usd_per_unit=1,
                    price_source="taken as 1 USD per token: the stablecoin's peg, not a market price",
                )
            )
        notes = [
            _comment_safe(
                f"Holdings of session {session_id}'s account {held['account']} on {handle.name} "
                f"(chain id {handle.chain_id}) at block {block}; the JSON report is {report_cid}."
            )
        ]
        table = information_table(rows, period=period, notes=notes)
        return table, {
            "period": period.isoformat(),
            "value_usd": str(table_value_total(rows)),
            "usd_per_eth": None if eth_usd is None else exact_decimal(eth_usd),
        }


def _policy_refusal(target: str, selector: bytes, rule: str) -> str:
    return (
        f"the session's action policy on {target} 0x{selector.hex()} refused the call: rule {rule} "
        "(params.allowlist[].policy)"
    )


async def _optional(call: Any, default: Any) -> Any:
    """The result of an optional ERC-20 metadata call, or `default` when the token does not have it."""
    try:
        return await call
    except (ContractLogicError, BadFunctionCallOutput):
        return default


def _printable(text: Any, limit: int) -> str:
    """A token's self-chosen name or symbol as table text: no control characters, at most `limit`."""
    return _UNPRINTABLE.sub("", str(text)).strip()[:limit]


def _comment_safe(text: str) -> str:
    """`text` (which quotes the spec and the memory) as a line the table's XML comment can carry."""
    return re.sub("-{2,}", "-", _printable(text, 1000)).rstrip("-")


def _eth_price(
    analysed: Any, market: Mapping[str, Any], symbol: str, decimals: int
) -> tuple[Fraction | None, str]:
    """USD per ETH from analyze_market's result in the session memory, and what it was read from.

    The pool's reserves give the exact price (stablecoin per ETH, scaled by both tokens' decimals) when
    the pool pairs WETH with the session's stablecoin; otherwise its `price` (rounded to 6 decimals) is
    used; otherwise there is none. One stablecoin counts as one US dollar."""
    if not isinstance(analysed, Mapping):
        return None, ""
    coin = symbol or "stablecoin"
    weth = str(market.get("weth", "")).lower()
    stable = str(market.get("stable", "")).lower()
    tokens = (str(analysed.get("token0", "")).lower(), str(analysed.get("token1", "")).lower())
    try:
        reserves = (int(analysed["reserve0"]), int(analysed["reserve1"]))
    except (KeyError, TypeError, ValueError):
        reserves = (0, 0)
    if weth and stable and set(tokens) == {weth, stable} and all(reserves):
        eth_reserve, stable_reserve = reserves if tokens[0] == weth else reserves[::-1]
        price = Fraction(stable_reserve * 10**18, eth_reserve * 10**decimals)
        return price, (
            f"pool {analysed.get('pair', '')} reserves read by analyze_market at block "
            f"{analysed.get('block', '?')}: {exact_decimal(price)} {coin} per ETH, 1 {coin} taken as 1 USD"
        )
    quoted = analysed.get("price")
    if isinstance(quoted, int | float) and not isinstance(quoted, bool) and 0 < quoted < float("inf"):
        return Fraction(Decimal(str(quoted))), (
            f"analyze_market's price at block {analysed.get('block', '?')}, rounded to 6 decimals; "
            f"1 {coin} taken as 1 USD"
        )
    return None, ""

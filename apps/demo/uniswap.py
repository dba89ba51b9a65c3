"""A real Uniswap V2 market on a local chain for the treasury demo: WETH9, the factory and Router02
exactly as compiled in the npm packages @uniswap/v2-core and @uniswap/v2-periphery (the router's pair
init-code hash matches those artifacts), a demo stablecoin (contracts/demo/DemoStablecoin.sol) and a
WETH/dUSD pool seeded with liquidity at a chosen price.

    market = await deploy_uniswap(rpc_url, deployer_key, eth_liquidity=100 * 10**18, price=3000)
    reading = await read_market(rpc_url, market)   # reserves and the pool's ETH price
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3

from agentgpt.chain.rpc import connect

REPO_ROOT = Path(__file__).resolve().parents[2]
UNISWAP_ARTIFACTS = {
    "WETH9": REPO_ROOT / "node_modules/@uniswap/v2-periphery/build/WETH9.json",
    "UniswapV2Factory": REPO_ROOT / "node_modules/@uniswap/v2-core/build/UniswapV2Factory.json",
    "UniswapV2Pair": REPO_ROOT / "node_modules/@uniswap/v2-core/build/UniswapV2Pair.json",
    "UniswapV2Router02": REPO_ROOT / "node_modules/@uniswap/v2-periphery/build/UniswapV2Router02.json",
}
DEMO_ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


class UniswapError(RuntimeError):
    pass


@cache
def artifact(name: str) -> dict[str, Any]:
    """ABI and bytecode of a Uniswap V2 contract (npm build/) or of a demo contract (committed)."""
    path = UNISWAP_ARTIFACTS.get(name) or DEMO_ARTIFACTS / f"{name}.json"
    if not path.is_file():
        raise UniswapError(f"{path} not found: run `npm ci` (Uniswap) or `make contracts`")
    raw = json.loads(path.read_text())
    bytecode = raw["bytecode"] if isinstance(raw["bytecode"], str) else raw["bytecode"]["object"]
    return {"abi": raw["abi"], "bytecode": bytecode if bytecode.startswith("0x") else "0x" + bytecode}


@dataclass(frozen=True)
class UniswapMarket:
    chain_id: int
    weth: str
    stable: str
    factory: str
    router: str
    pair: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MarketReading:
    block: int
    eth_reserve: int
    stable_reserve: int

    @property
    def price(self) -> float:
        """dUSD per ETH (both 18 decimals)."""
        return self.stable_reserve / self.eth_reserve if self.eth_reserve else 0.0


class _Signer:
    """Sends transactions from one key with local nonces and waits for each receipt."""

    def __init__(self, w3: AsyncWeb3[Any], account: LocalAccount, chain_id: int, nonce: int) -> None:
        self.w3, self.account, self.chain_id, self.nonce = w3, account, chain_id, nonce

    async def send(self, label: str, tx: dict[str, Any]) -> Any:
        tx = {**tx, "from": self.account.address, "nonce": self.nonce, "chainId": self.chain_id}
        if "gas" not in tx:
            tx["gas"] = await self.w3.eth.estimate_gas(tx) * 6 // 5  # type: ignore[arg-type]
        fee = await self.w3.eth.gas_price
        tx.setdefault("maxFeePerGas", fee * 2 + 10**9)
        tx.setdefault("maxPriorityFeePerGas", 10**9)
        tx.pop("from")
        signed = self.account.sign_transaction(tx)
        tx_hash = await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        self.nonce += 1
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.05)
        if receipt["status"] != 1:
            raise UniswapError(f"{label}: transaction 0x{bytes(tx_hash).hex()} reverted")
        return receipt

    async def deploy(self, name: str, *args: Any) -> str:
        art = artifact(name)
        c = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx = await c.constructor(*args).build_transaction({"from": self.account.address, "nonce": self.nonce})
        receipt = await self.send(
            f"deploy {name}", {k: v for k, v in tx.items() if k in ("data", "value", "gas")}
        )
        return to_checksum_address(receipt["contractAddress"])

    async def call(self, label: str, fn: Any, value: int = 0) -> Any:
        tx = await fn.build_transaction({"from": self.account.address, "nonce": self.nonce, "value": value})
        return await self.send(label, {"to": tx["to"], "data": tx["data"], "value": value, "gas": tx["gas"]})


def contract(w3: AsyncWeb3[Any], name: str, address: str) -> Any:
    return w3.eth.contract(address=to_checksum_address(address), abi=artifact(name)["abi"])


async def deploy_uniswap(
    rpc_url: str, deployer_key: str, *, eth_liquidity: int = 100 * 10**18, price: int = 3000
) -> UniswapMarket:
    """Deploy WETH9, UniswapV2Factory, UniswapV2Router02 and dUSD; seed a WETH/dUSD pool at `price`."""
    w3 = connect(rpc_url)
    try:
        account: LocalAccount = Account.from_key(deployer_key)
        chain_id = await w3.eth.chain_id
        s = _Signer(w3, account, chain_id, await w3.eth.get_transaction_count(account.address, "pending"))
        weth = await s.deploy("WETH9")
        factory = await s.deploy("UniswapV2Factory", account.address)
        router = await s.deploy("UniswapV2Router02", factory, weth)
        stable = await s.deploy("DemoStablecoin", account.address)
        stable_amount = eth_liquidity * price
        token = contract(w3, "DemoStablecoin", stable)
        await s.call("mint dUSD", token.functions.mint(account.address, stable_amount))
        await s.call("approve router", token.functions.approve(router, stable_amount))
        r = contract(w3, "UniswapV2Router02", router)
        deadline = int(time.time()) + 3600
        await s.call(
            "addLiquidityETH",
            r.functions.addLiquidityETH(
                stable, stable_amount, stable_amount, eth_liquidity, account.address, deadline
            ),
            value=eth_liquidity,
        )
        pair = await contract(w3, "UniswapV2Factory", factory).functions.getPair(weth, stable).call()
        return UniswapMarket(chain_id, weth, stable, factory, router, to_checksum_address(pair))
    finally:
        await w3.provider.disconnect()


async def read_market(rpc_url: str, market: UniswapMarket) -> MarketReading:
    w3 = connect(rpc_url)
    try:
        pair = contract(w3, "UniswapV2Pair", market.pair)
        r0, r1, _ = await pair.functions.getReserves().call()
        token0 = await pair.functions.token0().call()
        block = await w3.eth.block_number
        eth, stable = (r0, r1) if token0.lower() == market.weth.lower() else (r1, r0)
        return MarketReading(block, int(eth), int(stable))
    finally:
        await w3.provider.disconnect()


async def token_balance(rpc_url: str, token: str, holder: str) -> int:
    w3 = connect(rpc_url)
    try:
        return int(
            await contract(w3, "DemoStablecoin", token)
            .functions.balanceOf(to_checksum_address(holder))
            .call()
        )
    finally:
        await w3.provider.disconnect()

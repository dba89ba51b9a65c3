"""The seed's treasury session (section 6) end to end on a running local stack.

    inspect = await run_demo(network_path, session_addr, owner_key=..., deployer_key=..., executor_key=...)

1. deploys a real Uniswap V2 market (WETH/dUSD) on the home chain and bonds the executor;
2. creates the session from the seed's YAML (two chains, models, kyc_tier4 + ofac_filter +
   gas_optimizer_v3) through the session service, signed by the owner (request signature + the
   SessionFactory EIP-712 signature), activates it for the executor and funds its account with ETH
   (the session service grants the executor the AnchorRegistry writer role on the second chain);
3. submits the workflow: analyze_market, rebalance (30% ETH -> dUSD), publish_report (to IPFS);
4. waits until the executor has run them and anchored a checkpoint, completes the session (event log
   archived to IPFS, NFT burned) and returns InspectSession(detail="full"), which
   `apps.cli.dashboard.render` prints like the seed's `agentgpt session inspect`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from agentgpt.chain.rpc import connect
from agentgpt.clients import SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.contracts import load_artifact
from agentgpt.kyc import sign_attestation
from agentgpt.network import ChainInfo, load_network
from agentgpt.owner import SessionOwner
from agentgpt.session.v1 import session_pb2 as ss
from apps.demo.uniswap import deploy_uniswap

SWAP_SELECTOR = keccak(text="swapExactETHForTokens(uint256,address[],address,uint256)")[:4]
E18 = 10**18

Progress = Callable[[str], None]


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class DemoOptions:
    budget: int = 100 * E18  # AGPT
    treasury_eth: int = 10 * E18  # ETH funded into the session account
    pool_eth: int = 100 * E18
    pool_price: int = 3000  # dUSD per ETH
    max_base_fee_gwei: int = 100
    timeout: float = 180.0


class _Chain:
    """Plain signed transactions from dev keys (the demo's own set-up, not the product path)."""

    def __init__(self, info: ChainInfo) -> None:
        self.info = info
        self.w3 = connect(info.rpc_url)

    def contract(self, name: str) -> Any:
        return self.w3.eth.contract(
            address=to_checksum_address(self.info.contracts[name]), abi=load_artifact(name).abi
        )

    async def send(self, key: str, to: str, data: bytes = b"", value: int = 0) -> Any:
        acct = Account.from_key(key)
        tx: dict[str, Any] = {
            "from": acct.address,
            "to": to_checksum_address(to),
            "data": data,
            "value": value,
            "chainId": self.info.chain_id,
            "nonce": await self.w3.eth.get_transaction_count(acct.address, "pending"),
        }
        tx["gas"] = await self.w3.eth.estimate_gas(tx) * 6 // 5  # type: ignore[arg-type]
        base = (await self.w3.eth.get_block("latest"))["baseFeePerGas"]
        tx.update(maxFeePerGas=2 * base + 10**9, maxPriorityFeePerGas=10**9)
        tx.pop("from")
        signed = acct.sign_transaction(tx)
        h = await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await self.w3.eth.wait_for_transaction_receipt(h, timeout=120, poll_latency=0.05)
        if receipt["status"] != 1:
            raise DemoError(f"transaction to {to} reverted")
        return receipt

    async def call(self, key: str, fn: Any, value: int = 0) -> Any:
        return await self.send(key, fn.address, bytes.fromhex(fn._encode_transaction_data()[2:]), value)

    async def close(self) -> None:
        await self.w3.provider.disconnect()


def treasury_spec_yaml(chains: list[str], params: dict[str, Any], checkpoint_interval: int = 50) -> str:
    """The seed's section 6 spec, with the local chains and the demo's market parameters."""
    doc = {
        "type": "treasury_management",
        "params": {
            "chains": chains,
            "models": {"risk": "gpt-4-enterprise-finance", "execution": "web3-agent-v4"},
            **params,
        },
        "decorators": ["kyc_tier4", "ofac_filter", "gas_optimizer_v3"],
        "checkpoint_interval": checkpoint_interval,
    }
    return yaml.safe_dump(doc, sort_keys=False)


async def run_demo(
    network_path: str,
    session_addr: str,
    *,
    owner_key: str,
    deployer_key: str,
    executor_key: str,
    issuer_key: str,
    options: DemoOptions = DemoOptions(),
    progress: Progress = print,
) -> ss.InspectSessionResponse:
    """Run the treasury session on the stack at `session_addr`; return its InspectSession dashboard."""
    network = load_network(network_path)
    if not network.chains:
        raise DemoError(f"{network_path} lists no chains")
    home = _Chain(network.home)
    others = [_Chain(c) for c in network.chains[1:]]
    client = SessionClient(session_addr)
    owner = SessionOwner(owner_key, network.home, client)
    executor = Account.from_key(executor_key).address
    try:
        market = await deploy_uniswap(
            network.home.rpc_url, deployer_key, eth_liquidity=options.pool_eth, price=options.pool_price
        )
        progress(
            f"Uniswap V2 on '{network.home.name}': router {market.router}, WETH/dUSD pool {market.pair} "
            f"({options.pool_eth // E18} ETH at {options.pool_price} dUSD)"
        )
        await _bond_executor(home, deployer_key, executor_key)
        agpt = home.contract("AGPT")
        await home.call(deployer_key, agpt.functions.mint(owner.address, options.budget))

        params = {
            "market": {"chain": network.home.name, **market.to_json()},
            "max_base_fee_gwei": options.max_base_fee_gwei,
            "kyc_attestation": _attestation(issuer_key, owner.address),
            # the swap may only pay the session's own account (`to`, ABI word 2 of swapExactETHForTokens),
            # with at most half the treasury's ETH per call
            "allowlist": [
                {
                    "target": market.router,
                    "selector": "0x" + SWAP_SELECTOR.hex(),
                    "policy": {
                        "recipient_arg": 2,
                        "recipients": ["self"],
                        "max_value": str(options.treasury_eth // 2),
                    },
                }
            ],
        }
        spec_yaml = treasury_spec_yaml([c.name for c in network.chains], params)
        session = await owner.create(spec_yaml, options.budget)
        sid = session.session_id
        progress(f"session {sid} created (DRAFT), NFT minted on '{network.home.name}'")
        account = await home.contract("SessionFactory").functions.accountOf(int(sid)).call()
        await home.send(owner_key, account, value=options.treasury_eth)
        await owner.activate(sid, executor)
        progress(
            f"session {sid} ACTIVE, executor {executor}; treasury account {account} holds "
            f"{options.treasury_eth / E18:g} ETH"
        )
        tasks: list[tuple[str, dict[str, Any]]] = [
            ("analyze_market", {}),
            ("rebalance", {"fraction_bps": 3000}),
            ("publish_report", {"title": "holdings report (13F-style)"}),
        ]
        await owner.submit(sid, tasks)
        progress(f"submitted {len(tasks)} tasks: {', '.join(k for k, _ in tasks)}")
        inspect = await _wait_done(owner, home, others, sid, len(tasks), options.timeout, progress)
        for t in sorted(inspect.recent_tasks, key=lambda t: t.seq):
            status = ss.TaskStatus.Name(t.status).removeprefix("TASK_STATUS_")
            progress(f"  task {t.seq} {t.input.kind:<15} {status}{(': ' + t.error) if t.error else ''}")
        done = await owner.complete(sid)
        progress(
            f"session {sid} COMPLETED: event log archived at {done.log_cid}, NFT burned "
            f"(tx 0x{done.burn_tx_hash.hex()})"
        )
        return await owner.inspect(sid, "full")
    finally:
        await owner.close()
        await client.close()
        await home.close()
        for other in others:
            await other.close()


def _attestation(issuer_key: str, subject: str) -> dict[str, Any]:
    return sign_attestation(issuer_key, subject, 4, int(time.time()) + 24 * 3600)


async def _bond_executor(home: _Chain, deployer_key: str, executor_key: str) -> None:
    registry = home.contract("ExecutorRegistry")
    executor = Account.from_key(executor_key).address
    if await registry.functions.isBonded(executor).call():
        return
    bond = int(await registry.functions.minBond().call())
    agpt = home.contract("AGPT")
    await home.call(deployer_key, agpt.functions.mint(executor, bond))
    await home.call(executor_key, agpt.functions.approve(registry.address, bond))
    await home.call(executor_key, registry.functions.bond(bond))


async def _anchored_seq(home: _Chain, others: list[_Chain], sid: int) -> list[int]:
    """The latest anchored checkpoint seq on each chain (home: SessionFactory; others: AnchorRegistry)."""
    seqs = [int((await home.contract("SessionFactory").functions.latestCheckpoint(sid).call())[0])]
    for other in others:
        stream = await other.contract("AnchorRegistry").functions.streamOf(home.info.chain_id, sid).call()
        seqs.append(int(stream[2]))
    return seqs


async def _wait_done(
    owner: SessionOwner,
    home: _Chain,
    others: list[_Chain],
    sid: str,
    n_tasks: int,
    timeout: float,
    progress: Progress,
) -> ss.InspectSessionResponse:
    deadline = time.monotonic() + timeout
    seen = -1
    while True:
        inspect = await owner.inspect(sid, "full")
        if inspect.tasks_done != seen:
            seen = inspect.tasks_done
            progress(f"  {inspect.tasks_done}/{inspect.tasks_total} tasks done")
        anchored = await _anchored_seq(home, others, int(sid))
        if inspect.tasks_done >= n_tasks and min(anchored) >= n_tasks:
            cp = inspect.session.latest_checkpoint
            chains = [home.info.name] + [o.info.name for o in others]
            progress(f"  checkpoint {cp.seq} {cp.cid} anchored on {', '.join(chains)} (seq {anchored})")
            return inspect
        if inspect.session.state != cpb.SESSION_STATE_ACTIVE:
            raise DemoError(f"session {sid} left ACTIVE: {inspect.session.state_reason}")
        if time.monotonic() > deadline:
            raise DemoError(
                f"session {sid}: {inspect.tasks_done}/{n_tasks} tasks done, anchored seqs {anchored} "
                f"after {timeout:.0f}s"
            )
        await asyncio.sleep(0.5)

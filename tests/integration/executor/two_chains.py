"""Two real anvil chains with the AgentGPT contracts deployed: the seed's two-chain set-up."""

from __future__ import annotations

from dataclasses import dataclass

from web3 import Web3

from agentgpt.network import ChainInfo, Network
from tests.contracts.chain import E18, Chain

MIN_BOND = 100 * E18


@dataclass
class TwoChains:
    home: Chain
    other: Chain
    network: Network

    def bond_executor(self) -> None:
        c, a = self.home, self.home.actors
        if c.registry.functions.isBonded(a.executor).call():
            return
        c.tx(c.agpt.functions.mint(a.executor, MIN_BOND), a.admin)
        c.tx(c.agpt.functions.approve(c.registry.address, MIN_BOND), a.executor)
        c.tx(c.registry.functions.bond(MIN_BOND), a.executor)

    def session(
        self,
        budget: int = 100 * E18,
        allowlist: list[tuple[str, bytes]] | None = None,
        fund_wei: int = 0,
        policies: bytes = b"",
    ) -> int:
        """An ACTIVE session assigned to actors.executor, writer on the other chain, account funded."""
        c, a = self.home, self.home.actors
        self.bond_executor()
        c.tx(c.agpt.functions.mint(a.owner, budget), a.admin)
        sid = c.create(budget=budget)
        c.activate(sid, allowlist=allowlist or [], policies=policies)
        o = self.other
        o.tx(o.anchors.functions.grantWriter(c.chain_id, sid, a.executor), o.actors.admin)
        if fund_wei:
            account = c.factory.functions.accountOf(sid).call()
            receipt = c.w3.eth.wait_for_transaction_receipt(
                c.w3.eth.send_transaction({"from": a.owner, "to": account, "value": fund_wei})
            )
            assert receipt["status"] == 1
        return sid


def chain_info(name: str, chain: Chain, rpc_url: str) -> ChainInfo:
    return ChainInfo(
        name=name,
        chain_id=chain.chain_id,
        rpc_url=rpc_url,
        deploy_block=chain.deployment.deploy_block,
        contracts=dict(chain.deployment.contracts),
    )


def web3(url: str) -> Web3:
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))

"""A session's checkpoint and assignment events read straight from the chains' logs (no indexer): the
EventSource `agentgpt verify` gives the verifier, so a session is rechecked from the chains and IPFS alone.

The home chain's SessionFactory holds ExecutorAssigned and CheckpointAnchored; every other chain of the
network manifest holds its AnchorRegistry's CheckpointAnchored (for sessions of this home chain). The
events come back in the indexer's shape (`ChainEvent`, arguments as JSON: integers as decimal strings,
bytes as 0x hex), so the verifier reads both sources the same way.
"""

from __future__ import annotations

import json
from typing import Any

from eth_utils.address import to_checksum_address

from agentgpt.chain.rpc import connect
from agentgpt.contracts import load_artifact
from agentgpt.errors import Unavailable
from agentgpt.indexer.v1 import indexer_pb2 as ix
from agentgpt.network import ChainInfo, Network


def _arg(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class ChainLogs:
    def __init__(self, network: Network, *, timeout: float = 30.0) -> None:
        self.network = network
        self.timeout = timeout

    async def _events(
        self, chain: ChainInfo, contract: str, names: list[str], filters: dict[str, Any]
    ) -> list[ix.ChainEvent]:
        address = chain.contracts.get(contract)
        if not address:
            return []
        w3 = connect(chain.rpc_url, timeout=self.timeout)
        out: list[ix.ChainEvent] = []
        try:
            c = w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(contract).abi)
            for name in names:
                logs = await getattr(c.events, name)().get_logs(
                    from_block=chain.deploy_block, argument_filters=filters
                )
                for log in logs:
                    out.append(
                        ix.ChainEvent(
                            chain_id=chain.chain_id,
                            name=name,
                            session_id=str(log["args"]["sessionId"]),
                            block_number=int(log["blockNumber"]),
                            args_json=json.dumps({k: _arg(v) for k, v in dict(log["args"]).items()}),
                        )
                    )
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"chain {chain.name} ({chain.rpc_url}) unreachable: {exc}") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("web3", "aiohttp")):
                raise Unavailable(f"chain {chain.name} ({chain.rpc_url}): {exc}") from None
            raise
        finally:
            await w3.provider.disconnect()
        return out

    async def list_events(self, req: ix.ListEventsRequest) -> ix.ListEventsResponse:
        """Every ExecutorAssigned and CheckpointAnchored of `req.filter.session_id`, in one page."""
        sid = int(req.filter.session_id)
        home = self.network.home
        events = await self._events(
            home,
            "SessionFactory",
            ["ExecutorAssigned", "CheckpointAnchored", "SessionFinalized", "SessionStateChanged"],
            {"sessionId": sid},
        )
        for chain in self.network.chains:
            if chain.chain_id != home.chain_id:
                events += await self._events(
                    chain,
                    "AnchorRegistry",
                    ["CheckpointAnchored"],
                    {"sessionId": sid, "homeChainId": home.chain_id},
                )
        events.sort(key=lambda e: (e.chain_id != home.chain_id, e.chain_id, e.block_number))
        return ix.ListEventsResponse(events=events)

"""The network manifest: which chains exist, how to reach them and where the contracts are.

One JSON file (AGENTGPT_NETWORK) shared by every service:

    {"chains": [{"name": "home", "chain_id": 31337, "rpc_url": "http://127.0.0.1:8545",
                 "deploy_block": 0, "contracts": {"SessionFactory": "0x...", ...}}, ...]}

The first chain is the default home chain (where session NFTs live). Written by the stack launcher
from the deployment manifests; in Kubernetes it is a ConfigMap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgpt.runtime.config import ConfigError


@dataclass(frozen=True)
class ChainInfo:
    name: str
    chain_id: int
    rpc_url: str
    deploy_block: int = 0
    contracts: dict[str, str] = field(default_factory=dict)
    # Blocks after which a block is final (the indexer's finality window) and confirmations to wait.
    finality_window: int = 64
    confirmations: int = 0


@dataclass(frozen=True)
class Network:
    chains: tuple[ChainInfo, ...]

    @property
    def home(self) -> ChainInfo:
        return self.chains[0]

    def chain(self, key: str | int) -> ChainInfo:
        """A chain by name or id."""
        for c in self.chains:
            if c.name == key or str(c.chain_id) == str(key):
                return c
        raise KeyError(f"unknown chain {key!r}; known: {', '.join(c.name for c in self.chains)}")

    def to_json(self) -> dict[str, Any]:
        return {"chains": [c.__dict__ for c in self.chains]}


def load_network(path: str) -> Network:
    """Read a network manifest; an empty path gives an empty network (services without chains)."""
    if not path:
        return Network(chains=())
    try:
        raw = json.loads(Path(path).read_text())
        chains = tuple(
            ChainInfo(
                name=str(c["name"]),
                chain_id=int(c["chain_id"]),
                rpc_url=str(c["rpc_url"]),
                deploy_block=int(c.get("deploy_block", 0)),
                contracts=dict(c.get("contracts", {})),
                finality_window=int(c.get("finality_window", 64)),
                confirmations=int(c.get("confirmations", 0)),
            )
            for c in raw["chains"]
        )
    except FileNotFoundError:
        raise ConfigError(f"AGENTGPT_NETWORK: {path} does not exist") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"AGENTGPT_NETWORK: {path} is not a valid network manifest: {exc}") from None
    return Network(chains=chains)


def write_network(network: Network, path: str | Path) -> None:
    Path(path).write_text(json.dumps(network.to_json(), indent=2))

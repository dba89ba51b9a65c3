"""Compiled contract artifacts (built by scripts/build_contracts.py, committed, shipped as package data).

Kept free of web3 imports so that anything needing just an ABI stays light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

CONTRACT_NAMES = ("AGPT", "ExecutorRegistry", "SessionAccount", "SessionFactory", "AnchorRegistry")


@dataclass(frozen=True)
class Artifact:
    """One compiled contract as written by scripts/build_contracts.py."""

    contract_name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    compiler_settings: dict[str, Any]
    source_hash: str

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Artifact:
        """An artifact as scripts/build_contracts.py writes it (also the zk setup's BatchVerifier)."""
        return cls(
            contract_name=raw["contractName"],
            source_name=raw.get("sourceName", ""),
            abi=raw["abi"],
            bytecode=raw["bytecode"],
            deployed_bytecode=raw["deployedBytecode"],
            compiler_version=raw["compiler"]["version"],
            compiler_settings=raw["compiler"]["settings"],
            source_hash=raw["sourceHash"],
        )


@cache
def load_artifact(name: str) -> Artifact:
    """The artifact of contract `name` (e.g. "SessionFactory"); FileNotFoundError names the build command."""
    path = resources.files(__package__).joinpath("artifacts", f"{name}.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no artifact for contract {name!r}; run `python scripts/build_contracts.py`"
        ) from None
    return Artifact.from_json(raw)

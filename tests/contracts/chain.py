"""Test helpers for talking to the deployed contracts on a real anvil (sync web3 for brevity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from agentgpt.chain.deploy import Deployment
from agentgpt.contracts import CONTRACT_NAMES, load_artifact

E18 = 10**18
REVERT_GAS = 3_000_000  # explicit gas so a reverting transaction is mined (no estimate) and shows status 0


def _error_selectors() -> dict[str, str]:
    """'0x12345678' -> 'ErrorName' over every contract's ABI (ours and the OpenZeppelin errors they use)."""
    out: dict[str, str] = {}
    for name in CONTRACT_NAMES:
        for item in load_artifact(name).abi:
            if item["type"] == "error":
                sig = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                out["0x" + keccak(text=sig)[:4].hex()] = item["name"]
    return out


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


ERRORS = _error_selectors()


@dataclass
class Actors:
    admin: str  # deployer: contract admin, AGPT minter, oracle
    owner: str
    executor: str
    executor2: str
    stranger: str
    relayer: str
    unbonded: str


class Chain:
    """The deployed contracts plus the few chain operations the tests need."""

    def __init__(self, w3: Web3, deployment: Deployment, keys: tuple[str, ...]) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.keys = keys
        self.chain_id = deployment.chain_id
        addrs = [Account.from_key(k).address for k in keys]
        self.key_of = dict(zip(addrs, keys, strict=True))
        self.actors = Actors(
            admin=addrs[0],
            owner=addrs[1],
            executor=addrs[2],
            executor2=addrs[3],
            stranger=addrs[4],
            relayer=addrs[5],
            unbonded=addrs[6],
        )
        self.agpt = self.contract("AGPT")
        self.registry = self.contract("ExecutorRegistry")
        self.factory = self.contract("SessionFactory")
        self.anchors = self.contract("AnchorRegistry")
        self.implementation = self.contract("SessionAccount")

    def contract(self, name: str, address: str | None = None) -> Contract:
        art = load_artifact(name)
        return self.w3.eth.contract(
            address=to_checksum_address(address or self.deployment.contracts[name]), abi=art.abi
        )

    def account_contract(self, session_id: int) -> Contract:
        return self.contract("SessionAccount", self.factory.functions.accountOf(session_id).call())

    # ---------------------------------------------------------------- transactions
    def tx(self, fn: Any, sender: str, value: int = 0) -> Any:
        """Send and require success; returns the receipt."""
        tx_hash = fn.transact({"from": sender, "value": value})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, f"transaction reverted: {receipt}"
        return receipt

    def send_raw(self, fn: Any, sender: str, value: int = 0) -> Any:
        """Send with explicit gas (no estimation), whatever the outcome; returns the receipt."""
        tx_hash = fn.transact({"from": sender, "value": value, "gas": REVERT_GAS})
        return self.w3.eth.wait_for_transaction_receipt(tx_hash)

    def reverts(self, fn: Any, sender: str, error: str, value: int = 0) -> bytes:
        """Assert `fn` reverts with custom error `error`, both simulated and as a mined transaction.

        Returns the revert data (selector + arguments) for further checks.
        """
        try:
            fn.call({"from": sender, "value": value})
        except (ContractCustomError, ContractLogicError) as exc:
            data = exc.data if isinstance(exc.data, str) else ""
        else:
            raise AssertionError(f"expected revert {error}, but the call succeeded")
        got = ERRORS.get(data[:10], f"unknown selector {data[:10]!r}")
        assert got == error, f"expected {error}, got {got} ({data})"
        receipt = self.send_raw(fn, sender, value)
        assert receipt["status"] == 0, "the call reverted but the mined transaction succeeded"
        return bytes.fromhex(data[2:])

    def events(self, receipt: Any, contract: Contract, name: str) -> list[Any]:
        return list(contract.events[name]().process_receipt(receipt, errors=DISCARD))

    # ---------------------------------------------------------------- time
    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        resp = self.w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
        assert "error" not in resp, resp
        return resp["result"]

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def increase_time(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine")

    def set_next_timestamp(self, ts: int) -> None:
        self.rpc("evm_setNextBlockTimestamp", [ts])

    # ---------------------------------------------------------------- session shortcuts
    def create(
        self, owner: str | None = None, budget: int = 100 * E18, workflow: bytes = b"\x11" * 32
    ) -> int:
        owner = owner or self.actors.owner
        self.tx(self.agpt.functions.approve(self.factory.address, budget), owner)
        receipt = self.tx(self.factory.functions.createSession(workflow, budget), owner)
        return int(self.events(receipt, self.factory, "SessionCreated")[0]["args"]["sessionId"])

    def activate(
        self,
        session_id: int,
        executor: str | None = None,
        allowlist: list[tuple[str, bytes]] | None = None,
        owner: str | None = None,
        workflow: bytes = b"\x22" * 32,
        policies: bytes = b"",
    ) -> Any:
        return self.tx(
            self.factory.functions.activate(
                session_id, workflow, executor or self.actors.executor, allowlist or [], policies
            ),
            owner or self.actors.owner,
        )

    def active_session(
        self, budget: int = 100 * E18, allowlist: list[tuple[str, bytes]] | None = None, policies: bytes = b""
    ) -> int:
        sid = self.create(budget=budget)
        self.activate(sid, allowlist=allowlist, policies=policies)
        return sid

    def session(self, session_id: int) -> dict[str, Any]:
        s = self.factory.functions.getSession(session_id).call()
        keys = (
            "owner state reason enteredAt activeUsed executor lastSeq epoch proved budget spent chargedSeq workflowHash "
            "checkpointHash"
        ).split()
        return dict(zip(keys, s, strict=True))

    def balance(self, who: str) -> int:
        return int(self.agpt.functions.balanceOf(who).call())


ZERO32 = b"\x00" * 32


def reaffirm(factory: Contract, session_id: int, log_cid: bytes = b"") -> tuple[Any, ...]:
    """SessionFactory.FinalAnchor that re-affirms the session's last anchored checkpoint as its final one."""
    seq = factory.functions.latestCheckpoint(session_id).call()[0]
    return (seq, ZERO32, ZERO32, b"", b"", log_cid, ZERO32)

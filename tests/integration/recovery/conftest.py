"""The contracts deployed on the session's anvil (`eth_rpc`, tests/fixtures/anvil.py), each test in its own
snapshot: the contract suite's fixtures."""

from tests.contracts.conftest import _isolated, chain  # noqa: F401

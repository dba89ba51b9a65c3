"""EVM side of AgentGPT Sessions: contract deployment and EIP-712 signing helpers."""

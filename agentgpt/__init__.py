"""AgentGPT Sessions: the library the four services share (generated API stubs, runtime, clients, chain and IPFS access)."""

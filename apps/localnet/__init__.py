"""Local stand-ins for production infrastructure (anvil chain, ...), shared by tests and `agentgpt up`."""

"""The `agentgpt` command line."""

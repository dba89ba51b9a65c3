"""The four services of AgentGPT Sessions; each runs with `python -m services.<name>`."""

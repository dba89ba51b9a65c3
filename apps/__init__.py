"""The application layer: the `agentgpt` CLI (`apps.cli`), the local development stack (`apps.localnet`)
and the demo session (`apps.demo`). Applications may import the services and the library; nothing in
`services/` or `agentgpt/` imports them (docs/design.md §9, checked by `lint-imports`)."""

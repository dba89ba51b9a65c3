"""Session service: system of record and control plane for sessions (docs/design.md §3)."""

"""Session service: system of record and control plane for sessions (DESIGN.md §3)."""

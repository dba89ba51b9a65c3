"""Executor: the task execution engine (docs/design.md §3)."""

"""Executor: the task execution engine (DESIGN.md §3)."""

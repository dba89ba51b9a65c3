"""Recovery oracle: detects failed executors and rehydrates their sessions from verified checkpoints (DESIGN.md §3)."""

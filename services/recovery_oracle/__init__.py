"""Recovery oracle: detects failed executors and rehydrates their sessions from verified checkpoints (docs/design.md §3)."""

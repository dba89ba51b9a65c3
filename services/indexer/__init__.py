"""Chain indexer: follows every configured chain, survives reorgs, serves events (docs/design.md §3)."""

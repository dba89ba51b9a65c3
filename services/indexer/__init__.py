"""Chain indexer: follows every configured chain, survives reorgs, serves events (DESIGN.md §3)."""

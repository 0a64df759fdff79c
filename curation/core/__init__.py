"""The kernel every stage imports: one error type, typed YAML configs, shard and record I/O, the item schema.

It imports nothing else of the toolkit (tests/e2e/test_layers.py checks the package graph)."""

"""`curate`, the command: the top layer of the toolkit (root CLI, cross-stage workflows, the demo and its corpus, the
experiment runner). It imports every stage; nothing imports it (docs/architecture.md)."""

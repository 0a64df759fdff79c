"""The package graph is one-way: kernel <- language-model layer <- stages <- root CLI / experiment runner.

Parsed from every import statement (lazy ones inside functions included), so a shortcut taken inside a function
is caught too.
"""

from __future__ import annotations

import ast

from conftest import REPO as ROOT
PACKAGES = ("curation", "synth", "train", "evals")
TOP = ("curation.cli", "curation.__main__", "curation.workflows", "curation.demo", "curation.experiment",
       "train.__main__")  # the torchrun entry point mounts train and post-training commands
# what each layer may import besides itself
ALLOWED = {"kernel": set(), "lm": {"kernel"}, "top": {"kernel", "lm", "classify", "mix", "synth", "train", "posttrain", "evals", "top"}}
STAGES = ("classify", "mix", "synth", "train", "posttrain", "evals")
for _stage in STAGES:
    ALLOWED[_stage] = {"kernel", "lm"}
# post-training lives inside the train package and writes the same run log (train.metrics) as pretraining
ALLOWED["posttrain"] |= {"train"}


def layer(module: str) -> str:
    if module.startswith(TOP):
        return "top"
    if module.startswith("curation.core"):
        return "kernel"
    if module.startswith("curation.lm"):
        return "lm"
    if module.startswith("curation.mix"):
        return "mix"
    if module.startswith("train.posttrain"):
        return "posttrain"
    if module.startswith("curation"):
        return "classify"
    return module.split(".")[0]


def edges() -> set[tuple[str, str, str]]:
    out = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
                for name in names:
                    if name.split(".")[0] in PACKAGES:
                        out.add((mod, name, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return out


def test_every_import_goes_down_the_layers():
    bad = sorted(f"{where}: {layer(a)} -> {layer(b)} ({b})" for a, b, where in edges()
                 if layer(a) != layer(b) and layer(b) not in ALLOWED[layer(a)])
    assert not bad, "imports against the layering (docs/architecture.md):\n" + "\n".join(bad)


def test_layer_graph_is_acyclic_outside_the_top():
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges():
        if layer(a) != layer(b) and layer(a) != "top":
            graph.setdefault(layer(a), set()).add(layer(b))
    seen, stack = set(), []

    def visit(n):
        assert n not in stack, f"import cycle: {' -> '.join(stack + [n])}"
        if n in seen:
            return
        stack.append(n)
        for m in graph.get(n, ()):
            visit(m)
        stack.pop()
        seen.add(n)

    for n in list(graph):
        visit(n)
    assert "top" not in {b for targets in graph.values() for b in targets}

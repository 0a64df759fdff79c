"""Folders are layers, and imports run one way, down: kernel <- language-model layer <- stages <- the `curate` command.

Every import statement is parsed (lazy ones inside functions and relative ones included), so a shortcut taken inside a
function is caught too. The table below is the rule (docs/architecture.md): every module of the toolkit must fall in
one of its folders, or the test fails; nothing is filed under a layer by default.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from conftest import REPO as ROOT

PACKAGES = ("curate", "curation", "synth", "train", "evals")

# folder (or file) -> layer; the longest entry that contains a module decides
LAYERS = {
    "curation/__init__.py": "kernel",  # the library package's docstring: imports nothing
    "curation/core": "kernel",
    "curation/lm": "lm",
    "curation/classify": "classify",
    "curation/mix": "mix",
    "synth": "synth",
    "train": "train",
    "train/posttrain": "posttrain",  # shares train's run log (train.metrics)
    "train/__main__.py": "top",  # the torchrun entry point: mounts train's and post-training's commands together
    "evals": "evals",
    "curate": "top",  # the command: root CLI, cross-stage workflows, demo, experiment runner
}
STAGES = ("classify", "mix", "synth", "train", "posttrain", "evals")
FLOOR = {"kernel": 0, "lm": 1, **{s: 2 for s in STAGES}, "top": 3}
# what each layer may import besides itself
ALLOWED = {"kernel": set(), "lm": {"kernel"}, **{s: {"kernel", "lm"} for s in STAGES}, "top": set(FLOOR) - {"top"}}
ALLOWED["posttrain"] |= {"train"}
# what each top-level package may import besides itself
PACKAGE_ARROWS = {
    "curation": set(),
    "synth": {"curation"},
    "train": {"curation"},
    "evals": {"curation"},
    "curate": {"curation", "synth", "train", "evals"},
}


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def layer(module: str) -> str | None:
    rel = modules()[module].relative_to(ROOT).as_posix()
    hits = [key for key in LAYERS if rel == key or rel.startswith(key + "/")]
    return LAYERS[max(hits, key=len)] if hits else None


def resolve(name: str) -> str | None:
    """The toolkit module an imported name lands in: the longest dotted prefix that is a module."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules():
            return ".".join(parts[:i])
    return None


def defined(module: str) -> set[str]:
    """The names a module defines at its top level (in `if` and `try` blocks too): what `from module import x` can
    take."""
    names, todo = set(), list(ast.parse(modules()[module].read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo += [
                *node.body,
                *getattr(node, "orelse", []),
                *getattr(node, "finalbody", []),
                *[s for h in getattr(node, "handlers", []) for s in h.body],
            ]
    return names


@cache
def imports() -> tuple[tuple[str, str, str, str, str], ...]:
    """(importer, imported name, module it resolves to or '', file:line, the name taken from that module by a
    `from module import name` that is not a submodule, else '') for every import of a toolkit package."""
    out = []
    for mod, path in modules().items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [(a.name, "") for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level >= len(package.split(".")) + 1:  # above the top-level package: Python refuses it
                    out.append(
                        (mod, "." * node.level + (node.module or ""), "", f"{path.relative_to(ROOT)}:{node.lineno}", "")
                    )
                    continue
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module
                # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
                names = [
                    (f"{base}.{a.name}", "") if f"{base}.{a.name}" in modules() else (base, a.name) for a in node.names
                ]
            else:
                continue
            for name, symbol in names:
                if name.split(".")[0] in PACKAGES:
                    out.append((mod, name, resolve(name) or "", f"{path.relative_to(ROOT)}:{node.lineno}", symbol))
    return tuple(out)


def test_every_module_is_in_a_layer():
    unknown = sorted(str(p.relative_to(ROOT)) for m, p in modules().items() if layer(m) is None)
    assert not unknown, "modules in no layer (add their folder to LAYERS, docs/architecture.md):\n" + "\n".join(unknown)
    include = re.search(
        r"^packages = \{ find = \{ include = \[(.*)\] \} \}$", (ROOT / "pyproject.toml").read_text(), re.M
    )
    assert include, "pyproject.toml: [tool.setuptools] packages not found"
    assert sorted(re.findall(r'"(\w+)\*"', include.group(1))) == sorted(PACKAGES), (
        "pyproject.toml packages are not the ones checked here"
    )


def test_every_import_names_something_that_exists():
    """A moved module leaves no import of its old place behind, lazy ones included (no import runs to check them)."""
    bad = sorted(
        {
            f"{where}: {name}" + (f" import {symbol}" if symbol else "")
            for _, name, target, where, symbol in imports()
            if not target or target != name or (symbol and symbol != "*" and symbol not in defined(target))
        }
    )
    assert not bad, "imports of toolkit modules or names that do not exist:\n" + "\n".join(bad)


def test_every_import_goes_down_the_layers():
    bad = sorted(
        {
            f"{where}: {layer(a)} -> {layer(b)} ({b})"
            for a, _, b, where, _ in imports()
            if b and layer(a) != layer(b) and layer(b) not in ALLOWED.get(layer(a), ())
        }
    )
    assert not bad, "imports against the layering (docs/architecture.md):\n" + "\n".join(bad)


def test_the_table_points_down():
    up = sorted(
        f"{a} -> {b}"
        for a, bs in ALLOWED.items()
        for b in bs
        if FLOOR[b] > FLOOR[a] or (FLOOR[b] == FLOOR[a] and (a, b) != ("posttrain", "train"))
    )
    assert not up, f"ALLOWED lets a layer import one on its own floor or above: {up}"


def test_no_arrow_runs_up_between_top_level_packages():
    bad = sorted(
        {
            f"{where}: {a.split('.')[0]} -> {b.split('.')[0]} ({b})"
            for a, _, b, where, _ in imports()
            if b and a.split(".")[0] != b.split(".")[0] and b.split(".")[0] not in PACKAGE_ARROWS[a.split(".")[0]]
        }
    )
    assert not bad, "imports between top-level packages that run against the floors:\n" + "\n".join(bad)
    assert not [where for a, _, b, where, _ in imports() if b.split(".")[0] == "curate" and a.split(".")[0] != "curate"]


def test_no_two_modules_import_each_other():
    """No circle of imports anywhere, lazy ones included (an import of a.b.c is an arrow to a.b.c, not to a or a.b)."""
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for a, _, b, *_ in imports():
        if b and b != a:
            graph[a].add(b)
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, comps = set(), [], []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))

    def cycle(comp: list[str]) -> str:
        """One circle through the component, by breadth-first search back to its first module."""
        start, inside = comp[0], set(comp)
        prev, frontier = {start: None}, [start]
        while frontier:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & inside):
                    if w == start:
                        path = [v]
                        while prev[path[-1]] is not None:
                            path.append(prev[path[-1]])
                        return " -> ".join(reversed(path)) + f" -> {start}"
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        return ", ".join(comp)

    assert not comps, "import circles:\n" + "\n".join(
        cycle(c) + (f"   (the circle's component: {', '.join(c)})" if len(c) > 2 else "") for c in comps
    )

"""Report and hold the package's layout limits: sizes and the direction of imports.

Run by ``make test`` (exit 1 on a breach) so that the shape issue 20 gave the package cannot erode one
pull request at a time. Limits (CONTRIBUTING.md, "Layout"):

* no module over 450 lines (the Gong stand-in, a test double kept whole on purpose, aside);
* no class over 300 lines, no function or method over 60;
* imports run down the layers below, never up, and no import cycle among the package's modules.

Imports inside ``if TYPE_CHECKING:`` are ignored (they never run); imports inside functions count:
a lazy import that closes a circle is still a circle, only a hidden one.

``python scripts/check_layout.py`` prints the largest modules, classes and functions and every breach;
``--root DIR`` checks another tree (the tests use it on small synthetic packages).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "airflow_provider_gong"
MODULE_LINES = 450
CLASS_LINES = 300
FUNCTION_LINES = 60
#: Modules allowed past MODULE_LINES, each with its reason.
MODULE_EXEMPT = {f"{PACKAGE}.testing.standin": "the Gong stand-in: one test double, read as a whole"}
#: Modules held to a tighter limit, each with its reason.
MODULE_LIMITS = {f"{PACKAGE}.hooks.gong": (300, "the hook is thin: Airflow glue and one method per endpoint")}

#: Layers, lowest first. A module may import its own layer (no cycles) and any layer below it. A module's
#: layer is that of the longest entry naming it: ``_client.retry`` sits below ``quota``, the rest of
#: ``_client`` above it. The package root ("") holds only metadata.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "_compat", "exceptions"),  # metadata, Airflow shims, the public errors
    ("rules", "meetings", "pacing", "_dialect", "state", "links", "testing", "metrics"),  # models, plumbing
    ("_client.transport", "_client.retry", "_client.redact", "_client.errors"),  # HTTP plumbing
    ("quota", "oauth", "token_endpoint", "token_store"),  # what the quota and the OAuth chain keep
    ("_client",),  # settings, auth and the client that composes them
    ("hooks", "deferral", "lineage", "oauth_setup"),  # Airflow's face of the client
    ("sync",),  # the batch engine
    ("operators", "transfers"),  # what DAGs use
)


@dataclass
class Report:
    sizes: list[tuple[int, str, str]] = field(default_factory=list)  # (lines, kind, name)
    breaches: list[str] = field(default_factory=list)
    edges: dict[str, set[str]] = field(default_factory=dict)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    parts = module.split(".")[1:]
    for depth in range(len(parts), -1, -1):
        prefix = ".".join(parts[:depth])
        for rank, names in enumerate(LAYERS):
            if prefix in names and (depth or not parts):
                return rank
    return None


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str, is_package: bool, tree: ast.AST, known: set[str]) -> set[str]:
    """The package modules ``module`` imports (``from x import y`` counts ``x.y`` when that is a module)."""
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            names = names or [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _spans(tree: ast.AST, module: str) -> Iterator[tuple[int, str, str]]:
    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[int, str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                name = f"{prefix}.{child.name}"
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                yield (child.end_lineno or child.lineno) - start + 1, kind, name
                yield from walk(child, name)
            else:
                yield from walk(child, prefix)

    yield from walk(tree, module)


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def check(root: Path) -> Report:
    report = Report()
    files = sorted((root / PACKAGE).rglob("*.py"))
    trees = {module_name(root, path): (path, ast.parse(path.read_text(), str(path))) for path in files}
    known = set(trees)
    for module, (path, tree) in trees.items():
        lines = len(path.read_text().splitlines())
        report.sizes.append((lines, "module", module))
        limit = MODULE_LIMITS.get(module, (MODULE_LINES, ""))[0]
        if lines > limit and module not in MODULE_EXEMPT:
            report.breaches.append(f"module {module}: {lines} lines (limit {limit})")
        for size, kind, name in _spans(tree, module):
            report.sizes.append((size, kind, name))
            limit = CLASS_LINES if kind == "class" else FUNCTION_LINES
            if size > limit and module not in MODULE_EXEMPT:
                report.breaches.append(f"{kind} {name}: {size} lines (limit {limit})")
        report.edges[module] = imports_of(module, path.name == "__init__.py", tree, known)
    for module, targets in sorted(report.edges.items()):
        mine = layer_of(module)
        if mine is None:
            report.breaches.append(f"module {module}: in no layer (add its package to LAYERS)")
            continue
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                report.breaches.append(f"upward import: {module} (layer {mine}) -> {target} (layer {theirs})")
    for cycle in find_cycles(report.edges):
        report.breaches.append("import cycle: " + " <-> ".join(cycle))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--top", type=int, default=5, help="how many of the largest of each kind to list")
    args = parser.parse_args(argv)
    report = check(args.root)
    for kind, limit in (("module", MODULE_LINES), ("class", CLASS_LINES), ("function", FUNCTION_LINES)):
        largest = sorted((s for s in report.sizes if s[1] == kind), reverse=True)[: args.top]
        print(f"largest {kind}s (limit {limit}): " + ", ".join(f"{name} {n}" for n, _, name in largest))
    edges = sum(len(t) for t in report.edges.values())
    print(
        f"{len(report.edges)} modules, {edges} internal imports, layers: "
        + " < ".join("/".join(n or "<root>" for n in names) for names in LAYERS)
    )
    for breach in report.breaches:
        print(f"BREACH {breach}")
    print(f"check_layout: {len(report.breaches)} breach(es)")
    return 1 if report.breaches else 0


if __name__ == "__main__":
    sys.exit(main())

"""The import graph of the project's packages, and the check that it has no cycle.

    python -m import_graph [--root DIR] [--between-packages] [--forbid FROM:TO ...] PACKAGE...   (from tests/)

Every `import` and `from ... import` statement that runs counts, wherever it is: at module level or
inside a function (a deferred import is still a dependency, and still a cycle). Imports under
`if TYPE_CHECKING:` never run and are left out: a type named in an annotation is not a dependency.
An edge goes to the most specific module named (`from spooler.store import database` is an edge to
spooler.store.database, `from spooler.store.database import JobStore` too); importing a submodule
does not count as an edge to its parent package. With `--between-packages` the check is made on the
graph between packages instead (spooler.store stands for its modules, spooler.ipp for codec, tags
and client, spooler.ipp.server for the printer's modules; spooler.config, directly in the root
package, for itself): two packages that import each other, by whatever modules, are a cycle there.
Exit status 0 when the graph has no cycle and no
forbidden edge (`--forbid drivers:spooler`: nothing under drivers imports anything under spooler);
otherwise 1, with every cycle (as a strongly connected component, one path through it shown) and
every forbidden import on stdout.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path


def modules_of(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages (a package is named by its __init__.py)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported_modules(module: str, path: Path, tree: ast.AST, known: dict[str, Path]) -> Iterator[str]:
    """The project modules each import statement of the module names (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _running_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _most_specific(alias.name, known)) is not None:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if submodule in known else _most_specific(base, known)
                if target is not None:
                    yield target


def _running_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of the tree, except what sits under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")  # fmt: skip


def _most_specific(name: str, known: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    known = modules_of(root, packages)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = set(_imported_modules(module, path, tree, known)) - {module}
    return graph


def between_packages(graph: dict[str, set[str]], roots: Iterable[str]) -> dict[str, set[str]]:
    """The graph between packages: a module stands for the package that holds it (spooler.ipp.codec
    for spooler.ipp, spooler.ipp.server.resource for spooler.ipp.server); a module directly in a root
    package (spooler.config) and a package's own __init__ stand for themselves."""
    top = set(roots)

    def holder(module: str) -> str:
        parent = module.rpartition(".")[0]
        if module in top or parent in top or module in graph and _is_package(module, graph):
            return module
        return parent

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(holder(module), set()).update(holder(target) for target in targets)
    return {package: targets - {package} for package, targets in packages.items()}


def _is_package(module: str, graph: dict[str, set[str]]) -> bool:
    return any(other.startswith(module + ".") for other in graph)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_through(graph, component) for component in components]


def _path_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A closed path from the component's first module back to it, inside the component."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for successor in sorted(graph[node] & members):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start] + list(reversed(path[:-1])) + [start] if len(path) > 1 else [start, node, start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    return component + [start]


def forbidden(graph: dict[str, set[str]], rules: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs that break a FROM:TO rule (nothing under FROM imports anything under TO)."""

    def under(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    return sorted((importer, imported) for importer, targets in graph.items() for imported in targets
                  for source, target in rules if under(importer, source) and under(imported, target))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m import_graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="+", metavar="PACKAGE")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--forbid", action="append", default=[], metavar="FROM:TO")
    parser.add_argument("--between-packages", action="store_true",
                        help="check the graph between packages (spooler.ipp, spooler.ipp.server, spooler.store, ...)")
    args = parser.parse_args(argv)
    graph = import_graph(args.root, args.packages)
    if args.between_packages:
        graph = between_packages(graph, args.packages)
    rules = [tuple(rule.split(":", 1)) for rule in args.forbid]
    found_cycles = cycles(graph)
    found_forbidden = forbidden(graph, rules)  # type: ignore[arg-type]
    for cycle in found_cycles:
        print("cycle: " + " -> ".join(cycle))
    for importer, imported in found_forbidden:
        print(f"forbidden: {importer} imports {imported}")
    edges = sum(len(targets) for targets in graph.values())
    print(f"{len(graph)} modules, {edges} imports, {len(found_cycles)} cycle(s), {len(found_forbidden)} forbidden")
    return 1 if found_cycles or found_forbidden else 0


if __name__ == "__main__":
    sys.exit(main())

"""The module structure stays a tree: no import circle anywhere in the package, and no module reaching
into another's `_private` names (DEVELOPERS.md: give a shared piece a home of its own). Imports
inside functions count: they are circles all the same."""

from __future__ import annotations

import ast
from pathlib import Path

import grader

PACKAGE = Path(grader.__file__).parent


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names imported from it) for every relative import of a module, wherever it is."""
    module = _name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            names = [a.name for a in node.names]
            if not node.module:  # `from . import x`: x may be a module (then the package itself is not what is used)
                modules = [n for n in names if (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).exists()
                           or (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).with_suffix(".py").exists()]  # fmt: skip
                found += [(f"{target}.{n}", []) for n in modules]
                names = [n for n in names if n not in modules]
                if not names:
                    continue
            found.append((target, names))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, _ in _imports(path):
            if target in modules and target != module:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_of_the_package_imports_in_a_circle():
    assert not _cycles(_graph()), f"import circles: {[sorted(c) for c in _cycles(_graph())]}"


def test_the_circle_finder_finds_circles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_private_name_crosses_modules():
    modules = {_name(p): p for p in PACKAGE.rglob("*.py")}
    crossing = []
    for module in sorted(modules):
        for target, names in _imports(modules[module]):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                crossing.append(f"{module} imports {private} from {target}")
    assert not crossing, crossing


def test_the_quiz_package_has_one_job_per_module():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "quiz").glob("*.py")}
    assert sizes["__init__.py"] < 100 and max(sizes.values()) < 450, sizes

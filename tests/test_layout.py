"""The core's layout rules (docs/architecture.md): no import cycle between modules of
``framework/xhsi`` (module-level and function-level imports alike, read from the AST), and
no module over ~500 lines unless its docstring says why."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "framework" / "xhsi"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The core modules ``name`` imports, anywhere in its body. ``from pkg import mod`` counts
    as importing the submodule when one exists, else the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [(module, a.name) for a in node.names]
        else:
            continue
        for module, attr in targets:
            if attr and f"{module}.{attr}" in modules:
                found.add(f"{module}.{attr}")
            elif module in modules:
                found.add(module)
    found.discard(name)
    return found


def _is_package_init(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def import_cycles() -> list[list[str]]:
    """Every cycle of the module import graph (package ``__init__`` re-exports excluded: a
    package importing its own submodules is how it exports them), as lists of names."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = _imports(name, path, modules)
        if _is_package_init(name, modules):
            deps = {d for d in deps if not d.startswith(name + ".")}
        # importing a package means importing its __init__, which imports its submodules
        graph[name] = deps
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_core_has_no_import_cycle():
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_sees_a_cycle(tmp_path, monkeypatch):
    """The check can fail: two modules importing each other inside functions are a cycle."""
    pkg = tmp_path / "xhsi"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n")
    monkeypatch.setattr(f"{__name__}.CORE", pkg)
    assert import_cycles() == [["xhsi.a", "xhsi.b", "xhsi.a"]]


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_is_long_without_a_stated_reason(name):
    path = _modules()[name]
    n = len(path.read_text().splitlines())
    if n > MAX_LINES:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "lines" in doc and ("because" in doc or "reason" in doc), (
            f"{path.relative_to(CORE.parent)} has {n} lines (> {MAX_LINES}): split it, or say in its docstring "
            "why it is one module (\"Over 500 lines because ...\").")

"""The house's structure: layers import downward only, no two modules import each other (type-only imports count),
and modules stay small."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("textgrad_core", "credit", "tasks", "experiments")
# Who may not import whom (../shared/DESIGN.md).
FORBIDDEN = {"textgrad_core": {"credit", "tasks", "experiments"}, "credit": {"tasks", "experiments"},
             "tasks": {"credit", "experiments"}}
# Modules allowed past ~400 lines, and why.
LONG = {
    "textgrad_core/sandbox/runner.py": "the code that runs inside the sandbox child: one script, run by path, "
                                       "that must not import the package it guards",
    "tasks/tool_use.py": "a task with its tool implementations and data generator in one file",
    "tasks/humaneval.py": "a task with its own test harness (which must stay next to the scorer it feeds)",
}
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for n in names:
            while n and n not in mods:
                n = n.rpartition(".")[0]
            if n and n != name:
                out.add(n)
    return out


def test_no_two_modules_import_each_other():
    mods = _modules()
    graph = {m: _imports(m, f, mods) for m, f in mods.items()}
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == []


def test_layers_import_downward_only():
    mods = _modules()
    bad = [(m, t) for m, f in mods.items() for t in _imports(m, f, mods)
           if t.split(".")[0] in FORBIDDEN.get(m.split(".")[0], set())]
    assert bad == []


def test_modules_stay_small():
    long = {str(f.relative_to(ROOT)): len(f.read_text(encoding="utf-8").splitlines()) for f in _modules().values()}
    over = {f: n for f, n in long.items() if n > MAX_LINES and f not in LONG}
    assert over == {}


def test_the_sandbox_child_code_is_a_module_not_a_string():
    for f in (ROOT / "textgrad_core" / "sandbox").rglob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        docstrings = {id(b.body[0].value) for b in ast.walk(tree) if isinstance(
            b, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and b.body and isinstance(
            b.body[0], ast.Expr) and isinstance(b.body[0].value, ast.Constant)}
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                   and id(n) not in docstrings]
        assert max((s.count("\n") for s in strings), default=0) < 40, f  # no program hidden in a literal

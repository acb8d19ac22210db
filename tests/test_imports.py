"""Package structure: no import cycle among smplus modules; `import smplus` stays cheap."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "smplus"


def _module(path: pathlib.Path) -> str:
    return "smplus" if path.name == "__init__.py" else f"smplus.{path.stem}"


def import_graph() -> dict:
    """module -> the smplus modules it imports anywhere in its source (inside functions too)."""
    modules = {_module(p): p for p in PACKAGE.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = "smplus" if node.level == 1 else node.module or ""
                if node.level == 1 and node.module:
                    base = f"smplus.{node.module}"
                if base in modules:
                    edges.add(base)
                # `from . import x`: x may be a module of the package
                edges.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan)."""
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
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_read_from_every_module():
    graph = import_graph()
    assert {"smplus.plan", "smplus.executors", "smplus.ray_executor", "smplus.worker"} <= set(graph)
    assert "smplus.worker" in graph["smplus.ray_executor"] and "smplus.worker" in graph["smplus.executors"]
    assert "smplus.ray_executor" in graph["smplus.executors"]  # the lazy import inside make_executor counts


def test_cycle_finder_finds_a_two_module_circle():
    assert cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def test_no_two_smplus_modules_import_each_other():
    assert cycles(import_graph()) == []



def test_import_smplus_is_cheap():
    """`import smplus` loads no submodule; the API's classes load neither torch nor click."""
    code = ("import sys, smplus; print(sorted(m for m in sys.modules if m.startswith('smplus.'))); "
            "smplus.SMPlus, smplus.SMPlusDataset, smplus.transform, smplus.TransformOptions; "
            "print(sorted(m for m in ('torch', 'click', 'pymatting', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]

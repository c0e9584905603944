"""How ctxkit's modules import each other: no optional dependency on import, and no cycle among module-level imports.

The rule for the module graph (checked by :func:`test_module_level_imports_form_a_dag`):

* a node is a module of ``src/ctxkit`` (a package is its ``__init__``);
* an edge ``A -> B`` is an import of ``B`` (``import B``, ``from B import x``, or ``from P import B`` for a
  submodule ``B`` of ``P``) in ``A``'s module body, including under ``if``/``try``, and excluding
  ``if TYPE_CHECKING:`` blocks and imports inside functions;
* importing ``ctxkit.p.m`` from outside package ``ctxkit.p`` first runs ``ctxkit/p/__init__.py``, so it also
  adds the edge ``A -> ctxkit.p``; a module does not get that implicit edge to its own ancestors (they are
  already being imported when it runs). The root ``ctxkit/__init__.py`` imports nothing at module level
  (its names are resolved lazily), so every module's implicit edge to it is harmless and is left out.

That graph must be a DAG. A function-local import of a ctxkit module is allowed where it keeps an optional
dependency lazy or breaks a real cycle of this graph, with a ``# lazy:`` comment saying which.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

HEAVY = [
    "torch",
    "sentence_transformers",
    "llama_cpp",
    "faiss",
    "transformers",
    "langchain_core",
    "llama_index",
    "llmlingua",
    "ray",
    "lancedb",
    "redis",
    "psycopg",
    "openai",
    "anthropic",
    "onnxruntime",
    "qdrant_client",
    "opentelemetry",
    "matplotlib",
    "pandas",
]
# modules whose purpose is a framework: they import it at module level, by design
ADAPTERS = ("ctxkit.integrations.", "ctxkit.telemetry.langchain", "ctxkit.telemetry.llamaindex")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "ctxkit").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _module_level_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                visit(node.orelse)
                visit(node.finalbody)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                for alias in node.names:
                    if f"{target}.{alias.name}" in modules:
                        found.add(f"{target}.{alias.name}")
                    elif target in modules:
                        found.add(target)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    edges = set()
    for target in found:
        edges.add(target)
        parts = target.split(".")
        for i in range(2, len(parts)):  # implicit edges to the packages ctxkit.p, ctxkit.p.q ... (not the root)
            parent = ".".join(parts[:i])
            if parent in modules and not (name == parent or name.startswith(parent + ".")):
                edges.add(parent)
    edges.discard(name)
    return edges


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or ``None``."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_module_level_imports_form_a_dag() -> None:
    modules = _modules()
    graph = {name: _module_level_imports(name, path, modules) for name, path in modules.items()}
    assert sum(len(v) for v in graph.values()) > 100, "the parser found too few imports to mean anything"
    cycle = _cycle(graph)
    assert cycle is None, "module-level imports form a cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_importing_any_core_module_loads_no_optional_dependency() -> None:
    core = [m for m in _modules() if m != "ctxkit.__main__" and not m.startswith(ADAPTERS)]
    assert len(core) > 80
    code = (
        "import importlib, json, sys\n"
        f"for name in {core!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_import_ctxkit_loads_no_heavy_module() -> None:
    code = f"import json, sys, ctxkit; print(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

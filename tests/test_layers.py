"""The architecture as a rule: each layer imports only the layers below it, and nothing imports in a circle.

The layers, bottom to top (docs/design.md draws them):

    errors, _x64, reference      what every layer may use; the float64 reference needs nothing else
    study                        what users write (no JAX)
    model                        the pure economics (jax and numpy only)
    sampling                     uniforms, copula, shocks, inverse CDFs
    stats                        reducers, sketches and the tables made from them
    engine                       the compiled stages and the device loop (writes no files)
    io                           the run folder (never the engine)
    workflows                    run, resume, stress, sweep, merge, claims, analyze
    report                       the HTML page
    cli                          the typer/rich shell
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mcrisk"
LAYERS = ["study", "model", "sampling", "stats", "engine", "io", "workflows", "report", "cli"]
# Layer pairs that the order alone would allow but the design forbids.
FORBIDDEN = {("io", "engine"), ("report", "engine"), ("report", "workflows")}
# Third-party packages each layer may not import.
BANNED_EXTERNAL = {
    "study": {"jax", "jaxlib"},
    "model": "all but jax and numpy",
}
STDLIB = set(sys.stdlib_module_names)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(imported module, line, inside a function) for every import of a module of this file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inside, typing_only = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        nested = id(node) in inside
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, nested
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "mcrisk" or (node.level and not node.module):
                for alias in node.names:  # `from mcrisk import study` names a module
                    yield f"{module}.{alias.name}", node.lineno, nested
            else:
                yield module, node.lineno, nested


def _internal(target: str, modules: set[str]) -> str | None:
    """The mcrisk module that an import names (the longest known prefix), or None."""
    parts = target.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def _foundation(module: str) -> bool:
    return module in ("mcrisk.errors", "mcrisk._x64", "mcrisk.reference") or module.startswith("mcrisk.reference.")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {_module_name(p) for p in FILES}
GRAPH = {_module_name(p): list(_imports(p)) for p in FILES}


def test_every_module_belongs_to_a_layer_or_the_foundation():
    loose = [m for m in MODULES if _layer(m) is None and not _foundation(m) and m not in {"mcrisk", "mcrisk.__main__"}]
    assert not loose, f"modules outside the layers: {loose}"


def _layer_violations() -> list[str]:
    bad = []
    for module, imports in GRAPH.items():
        own = _layer(module)
        for target, line, _ in imports:
            dep = _internal(target, MODULES)
            if dep is None or _foundation(dep) or own is None:
                continue
            other = _layer(dep)
            if other is None:
                bad.append(f"{module}:{line} imports {dep} (the package root: import the module itself)")
            elif other != own and (LAYERS.index(other) > LAYERS.index(own) or (own, other) in FORBIDDEN):
                bad.append(f"{module}:{line} ({own}) imports {dep} ({other})")
    return bad


def test_each_layer_imports_only_the_layers_below_it():
    bad = _layer_violations()
    assert not bad, "\n".join(bad)


def test_the_foundation_imports_no_layer():
    bad = [
        f"{m}:{line} imports {target}"
        for m in MODULES
        if _foundation(m)
        for target, line, _ in GRAPH[m]
        if (dep := _internal(target, MODULES)) is not None and not _foundation(dep)
    ]
    assert not bad, "\n".join(bad)


def _external(module: str):
    for target, line, _ in GRAPH[module]:
        top = target.split(".")[0]
        if top and top != "mcrisk" and top not in STDLIB and top != "__future__":
            yield top, line


def test_study_needs_no_jax_and_the_model_only_jax_and_numpy():
    bad = []
    for module in MODULES:
        layer = _layer(module)
        for top, line in _external(module):
            if layer == "study" and top in BANNED_EXTERNAL["study"]:
                bad.append(f"{module}:{line} imports {top}")
            if layer == "model" and top not in {"jax", "numpy"}:
                bad.append(f"{module}:{line} imports {top}")
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_typer_or_rich():
    bad = [
        f"{m}:{line} imports {top}"
        for m in MODULES
        if _layer(m) != "cli"
        for top, line in _external(m)
        if top in {"typer", "rich"}
    ]
    assert not bad, "\n".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every import."""
    edges = {m: {d for t, _, _ in imps if (d := _internal(t, MODULES)) and d != m} for m, imps in GRAPH.items()}
    # A submodule's import of its package's __init__ is how Python loads it, not a dependency.
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    """Imports inside functions count too, so deferring an import cannot hide a cycle."""
    cycles = _cycles()
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def _code_lines(text: str, tree: ast.Module) -> set[int]:
    """The numbers of the lines that hold code: not blank, not only a comment, not a docstring.
    (The formatter lays a long call out one argument per line; the measure is what there is to read.)"""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docs.update(range(first.lineno, first.end_lineno + 1))
    return {
        i
        for i, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and i not in docs
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_read_in_one_sitting(path):
    """Modules under about 400 lines of code, function bodies under about 80."""
    text = path.read_text()
    tree = ast.parse(text)
    code = _code_lines(text, tree)
    assert len(code) <= 400, f"{path.name}: {len(code)} lines of code"
    long = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = len(code & set(range(node.body[0].lineno, node.end_lineno + 1)))
            if body > 80:
                long.append(f"{node.name}: {body} lines of code")
    assert not long, ", ".join(long)


def test_every_subpackage_ships():
    """A subpackage missing from pyproject.toml's list would be left out of `pip install .`."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_module_name(p) for p in FILES if p.name == "__init__.py"}
    assert packages - listed == set()

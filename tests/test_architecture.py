"""The package's architecture, checked from its source: layers, no import cycles, no private
names across modules, no side effects on import.

Every module under ``src/spikeconverter`` is parsed with :mod:`ast`; every ``import`` statement
counts, at module level or inside a function (a function-level import hides a cycle from the
interpreter until the function runs, not from this test). Relative imports are resolved, and a
name imported from a package is followed to the child module its ``__init__`` got it from, so
``from spikeconverter.converters import Graph`` depends on ``converters.ir``. A package
``__init__`` re-exporting its own children is not a cycle.

Layers, each importing only those below it:
``coding`` -> neuron (``plugin``, ``processes``) -> network core (``converters``: IR, capture,
calibrate, schedule, counting, serialize) -> backends (Norse, Lava) -> ``api`` -> training,
baselines, evaluation, cli.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "spikeconverter"
SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Import:
    """One imported name (or module) of one import statement."""

    importer: str
    target: str  # the package module the name comes from (re-exports followed)
    name: str | None  # the name of ``from X import name``; None for ``import X``
    file: str  # the importer's file, relative to the source root
    line: int
    nested: bool  # inside a function or class body, not at module level

    def where(self) -> str:
        return f"{self.file}:{self.line} ({'function' if self.nested else 'module'}-level)"


@dataclass(frozen=True)
class Statement:
    """One name of an import statement, as written (``from base import name as alias``)."""

    base: str  # absolute: relative imports resolved
    name: str | None
    alias: str | None
    line: int
    nested: bool


def find_modules(src: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` (a package is its ``__init__.py``)."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def absolute_base(importer: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str:
    """The absolute module name of ``from <base> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = importer.split(".")
    # in a package's __init__, "." is the package itself; in a module, its parent
    keep = len(parts) - node.level + (1 if is_package(importer, modules) else 0)
    return ".".join(parts[:keep] + ([node.module] if node.module else []))


def statements(module: str, modules: dict[str, Path]) -> list[Statement]:
    """Every import of ``module``, at module level or nested in a function or class."""
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Statement(a.name, None, None, node.lineno, nested) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(module, node, modules)
            found.extend(
                Statement(base, a.name, a.asname, node.lineno, nested) for a in node.names
            )
        inner = nested or isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
        )
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(modules[module].read_text(), filename=str(modules[module])), False)
    return found


def owning_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def source_of(
    base: str, name: str | None, modules: dict[str, Path], exports: dict[str, dict]
) -> str | None:
    """The package module that ``from base import name`` (or ``import base``) reads.

    As Python does: a name the package's ``__init__`` binds wins (followed to the module the
    ``__init__`` imported it from), else ``base.name`` is a submodule, else ``base`` defines it.
    """
    owner = owning_module(base, modules)
    seen = set()
    while name and owner in exports and name in exports[owner] and owner not in seen:
        seen.add(owner)
        owner, name = exports[owner][name]
    if name and owner == base and f"{base}.{name}" in modules:
        return f"{base}.{name}"
    return owner


def re_exports(modules: dict[str, Path]) -> dict[str, dict[str, tuple[str, str]]]:
    """Package -> {name its ``__init__`` imports: (module it came from, its name there)}."""
    table: dict[str, dict[str, tuple[str, str]]] = {}
    for package in (m for m in modules if is_package(m, modules)):
        table[package] = {}
        for st in statements(package, modules):
            owner = owning_module(st.base, modules)
            if st.name and owner == st.base and f"{st.base}.{st.name}" in modules:
                owner = f"{st.base}.{st.name}"  # ``from . import child``
            if st.name and owner and owner != package:
                table[package][st.alias or st.name] = (owner, st.name)
    return table


def package_imports(src: Path = SRC, package: str = PACKAGE) -> tuple[list[Import], dict]:
    """Every import of a package module by a package module, re-exports followed."""
    modules = find_modules(src, package)
    exports = re_exports(modules)
    imports = []
    for module, path in modules.items():
        file = str(path.relative_to(src))
        for st in statements(module, modules):
            target = source_of(st.base, st.name, modules, exports)
            if target is not None and (target == package or target.startswith(package + ".")):
                imports.append(Import(module, target, st.name, file, st.line, st.nested))
    return imports, modules


def dependency_edges(imports: list[Import], modules: dict[str, Path]) -> dict[str, dict]:
    """importer -> {imported module: the first import that makes the edge}."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.target == imp.importer:
            continue
        # a package's __init__ importing its own children re-exports them: not a dependency
        if is_package(imp.importer, modules) and imp.target.startswith(imp.importer + "."):
            continue
        edges.setdefault(imp.importer, {}).setdefault(imp.target, imp)
    return edges


def strongly_connected(edges: dict[str, dict]) -> list[list[str]]:
    """Components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return components


def shortest_cycle(component: list[str], edges: dict[str, dict]) -> list[Import]:
    """The imports of a shortest cycle through the first module of ``component``."""
    start, members = component[0], set(component)
    parent: dict[str, Import] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w, imp in sorted(edges.get(v, {}).items()):
            if w not in members or w in parent:
                continue
            parent[w] = imp
            if w == start:
                path = [imp]
                while path[0].importer != start:
                    path.insert(0, parent[path[0].importer])
                return path
            queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def describe_cycles(imports: list[Import], modules: dict[str, Path]) -> list[str]:
    """One readable paragraph per import cycle: its modules and one concrete loop."""
    edges = dependency_edges(imports, modules)
    out = []
    for component in strongly_connected(edges):
        loop = "\n".join(
            f"    {imp.importer} -> {imp.target}  [{imp.where()}]"
            for imp in shortest_cycle(component, edges)
        )
        out.append(
            f"import cycle of {len(component)} modules: {', '.join(component)}\n"
            f"  for example:\n{loop}"
        )
    return out


def private_imports(imports: list[Import]) -> list[str]:
    """``from X import _name`` where X is another module of the package."""
    return [
        f"{imp.importer} imports {imp.name} from {imp.target}  [{imp.where()}]"
        for imp in imports
        if imp.name
        and imp.name.startswith("_")
        and not imp.name.startswith("__")
        and imp.target != imp.importer
    ]


def in_group(module: str, prefixes: tuple[str, ...]) -> bool:
    """``module`` is one of ``prefixes`` (dotted, below the package) or inside one of them."""
    rel = module.removeprefix(PACKAGE + ".")
    return any(rel == p or rel.startswith(p + ".") for p in prefixes)


CORE = ("converters.ir", "converters.calibrate", "converters.schedule", "converters.counting",
        "converters.serialize", "converters.correction", "converters.reconstruction")
NORSE_BACKEND = ("converters.norse_backend", "converters.norse_stream")
LAVA_BACKEND = ("converters.lava_backend", "converters.to_lava")
API = ("converters.api",)
#: Leaf utilities below every layer (standard library only): atomic writes, the signal policy.
UTILITIES = ("atomic", "interrupts", "options")


def is_core(module: str) -> bool:
    """IR, capture (``capture*`` modules or package), calibrate, schedule, counting, serialize."""
    rel = module.removeprefix(PACKAGE + ".")
    return in_group(module, CORE) or rel.startswith("converters.capture")


#: (rule, which importers it covers, which package modules they may not import)
LAYER_RULES = [
    ("coding imports no other package module",
     lambda m: in_group(m, ("coding",)), lambda t: True),
    ("the leaf utilities import no other package module",
     lambda m: in_group(m, UTILITIES), lambda t: True),
    # both may use the leaf utilities (e.g. the signal policy of every Lava runtime)
    ("plugin imports only coding and plugin",
     lambda m: in_group(m, ("plugin",)),
     lambda t: not in_group(t, ("coding", "plugin") + UTILITIES)),
    ("processes imports only coding and processes",
     lambda m: in_group(m, ("processes",)),
     lambda t: not in_group(t, ("coding", "processes") + UTILITIES)),
    ("the network core imports no backend and not api",
     is_core, lambda t: in_group(t, NORSE_BACKEND + LAVA_BACKEND + API)),
    ("the Norse backend imports neither the Lava backend nor api",
     lambda m: in_group(m, NORSE_BACKEND), lambda t: in_group(t, LAVA_BACKEND + API)),
    ("the Lava backend imports neither the Norse backend nor api",
     lambda m: in_group(m, LAVA_BACKEND), lambda t: in_group(t, NORSE_BACKEND + API)),
]


def layer_violations(imports: list[Import], modules: dict[str, Path]) -> list[str]:
    """Every import that breaks one of :data:`LAYER_RULES`."""
    edges = dependency_edges(imports, modules)
    out = []
    for rule, covers, forbidden in LAYER_RULES:
        for importer in sorted(m for m in edges if covers(m)):
            for target, imp in sorted(edges[importer].items()):
                if target != PACKAGE and forbidden(target):
                    out.append(f"{rule}: {importer} imports {target}  [{imp.where()}]")
    return out


def report(title: str, problems: list[str]) -> str:
    return f"{len(problems)} {title}:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def graph() -> tuple[list[Import], dict[str, Path]]:
    return package_imports()


def test_no_import_cycles(graph):
    cycles = describe_cycles(*graph)
    assert not cycles, report("import cycle(s) between package modules", cycles)


def test_no_private_names_imported_across_modules(graph):
    private = private_imports(graph[0])
    assert not private, report("private name(s) imported across modules", private)


def test_layers_import_only_downwards(graph):
    broken = layer_violations(*graph)
    assert not broken, report("import(s) against the layers", broken)


def test_the_checks_see_function_level_cycles_private_names_and_layers(tmp_path):
    # a toy package with what the checks must catch: a cycle closed by a function-level
    # relative import, a private name, a re-export, and plugin importing the network core
    files = {
        "__init__.py": "from spikeconverter.converters import api\n",
        "coding.py": "X = 1\n",
        "plugin/__init__.py": "from .functional import step\n",
        "plugin/functional.py": "def step():\n    from ..converters.ir import Graph\n",
        "converters/__init__.py": "from .ir import Graph\nfrom .api import convert\n",
        "converters/ir.py": "class Graph:\n    pass\n",
        "converters/api.py": "from spikeconverter.converters import Graph\n"
                             "from .serialize import _check\n"
                             "def convert():\n    pass\n",
        "converters/serialize.py": "def _check():\n    from . import api\n",
    }
    for name, text in files.items():
        (tmp_path / PACKAGE / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / PACKAGE / name).write_text(text)
    imports, modules = package_imports(tmp_path)
    cycles = describe_cycles(imports, modules)
    assert len(cycles) == 1
    assert "converters.api, spikeconverter.converters.serialize" in cycles[0]
    assert "serialize.py:2 (function-level)" in cycles[0]
    assert private_imports(imports) == [
        "spikeconverter.converters.api imports _check from spikeconverter.converters.serialize"
        "  [spikeconverter/converters/api.py:2 (module-level)]"
    ]
    # ``from spikeconverter.converters import Graph`` depends on converters.ir, not on the
    # package (whose __init__ imports api): no cycle api -> converters -> api
    edges = dependency_edges(imports, modules)
    assert "spikeconverter.converters.ir" in edges["spikeconverter.converters.api"]
    assert layer_violations(imports, modules) == [
        "plugin imports only coding and plugin: spikeconverter.plugin.functional imports "
        "spikeconverter.converters.ir  [spikeconverter/plugin/functional.py:2 (function-level)]",
        "the network core imports no backend and not api: spikeconverter.converters.serialize "
        "imports spikeconverter.converters.api  [spikeconverter/converters/serialize.py:2 "
        "(function-level)]",
    ]


def test_import_spikeconverter_has_no_side_effects():
    # a fresh interpreter: what ``import spikeconverter`` loads and changes, and nothing else
    probe = textwrap.dedent(
        """
        import multiprocessing, sys
        import spikeconverter
        training = "spikeconverter.training"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lava", "norse")
                        or m == training or m.startswith(training + "."))
        print("loaded:", loaded)
        print("multiprocessing:", multiprocessing.get_start_method(allow_none=True))
        import torch.multiprocessing
        print("torch.multiprocessing:", torch.multiprocessing.get_start_method(allow_none=True))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == [
        "loaded: []", "multiprocessing: None", "torch.multiprocessing: None"
    ], result.stdout


def test_lazy_top_level_names_resolve_to_the_api():
    import spikeconverter as sc
    from spikeconverter.converters import calibrate, capture, convert, load
    from spikeconverter.training import finetune

    assert (sc.convert, sc.load, sc.calibrate, sc.capture, sc.finetune) == (
        convert, load, calibrate, capture, finetune
    )
    assert {"convert", "load", "finetune"} <= set(dir(sc))
    with pytest.raises(AttributeError, match="no_such_name"):
        sc.no_such_name  # noqa: B018

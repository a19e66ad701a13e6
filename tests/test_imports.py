"""The package's import layering, read from the source (``ast``) of every module.

The parts, lowest first; a module imports only modules of its own part or of parts below it (imports at
module level: a function may import a part above it lazily, e.g. the package's lazy public names):

0. ``base``: the settings table and the crash-safe writer (``settings``, ``safe_write``): standard library
   and yaml only, used by every part above.
1. ``light data``: the converters, the raw-log reader, the atomic-file format, the clicks and the temporal
   graph (``data.atomic``, ``data.clicks``, ``data.convert``, ``data.raw_log``, ``data.sources``,
   ``data.synthetic``, ``data.temporal_graph``, ``data.daily_graphs``; the ``data`` package's lazy names).
   All but ``data.daily_graphs`` load neither torch nor RecBole (checked in a fresh process).
2. ``compat``: the module-level RecBole fixes (imports nothing of this package).
3. ``distributed``: processes, process groups, sharding, a rank's trainer (torch and RecBole only).
4. ``data``: the day-split RecBole data set and its loaders (``data.dataset``, ``data.dataloader``).
5. ``model``: TASRec and the baselines.
6. ``training``: ``config``, ``run_folder``, ``checkpoint``, ``resume``, ``chunked_eval``, ``lazy_adam``, ``trainer``,
   ``continual``, ``quick_start``.
7. ``apps``: what users run: ``serve``, ``tune``, ``cli``, ``data.stats``, ``harness`` and the package's
   ``__init__`` (its public names).

Since no part imports one above it, no two parts import each other (no circle).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recbole_tasrec"

#: Module (dotted, without the package name) or package prefix -> its part; the longest match wins.
PARTS = {
    "settings": "base",
    "safe_write": "base",
    "data": "light data",
    "data.atomic": "light data",
    "data.clicks": "light data",
    "data.convert": "light data",
    "data.raw_log": "light data",
    "data.sources": "light data",
    "data.synthetic": "light data",
    "data.temporal_graph": "light data",
    "data.daily_graphs": "light data",
    "compat": "compat",
    "distributed": "distributed",
    "data.dataset": "data",
    "data.dataloader": "data",
    "model": "model",
    "data.stats": "apps",
    "config": "training",
    "run_folder": "training",
    "checkpoint": "training",
    "resume": "training",
    "trainer": "training",
    "quick_start": "training",
    "continual": "training",
    "chunked_eval": "training",
    "lazy_adam": "training",
    "": "apps",
}
ORDER = ["base", "light data", "compat", "distributed", "data", "model", "training", "apps"]
LIGHT = ["settings", "safe_write", "data.convert", "data.raw_log", "data.temporal_graph", "data.clicks", "data.atomic"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    matches = [prefix for prefix in PARTS if module == prefix or module.startswith(prefix + ".") or prefix == ""]
    return PARTS[max(matches, key=len)]


def module_level_imports(path: Path) -> set[str]:
    """This package's modules that ``path`` imports at module level (not in functions, nor ``TYPE_CHECKING``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            names = []
        found.update(name.removeprefix("recbole_tasrec.") for name in names if name.startswith("recbole_tasrec."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in found if (PACKAGE / name.replace(".", "/")).is_dir() or _is_module(name)}


def _is_module(name: str) -> bool:
    return (PACKAGE / (name.replace(".", "/") + ".py")).is_file()


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): module_level_imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_part_and_no_part_imports_one_above_it() -> None:
    upward = [
        f"{module} ({part_of(module)}) imports {target} ({part_of(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if ORDER.index(part_of(target)) > ORDER.index(part_of(module))
    ]
    assert not upward, "\n".join(upward)


def test_no_circle_between_parts() -> None:
    edges = {
        (part_of(module), part_of(target))
        for module, targets in import_graph().items()
        for target in targets
        if part_of(module) != part_of(target)
    }
    assert not {(a, b) for a, b in edges if (b, a) in edges}


def test_the_walker_sees_imports() -> None:
    """The checks above could pass on an empty graph: the walker finds known edges, and not lazy ones."""
    graph = import_graph()
    assert "data.dataset" in graph["quick_start"] and "compat" in graph[""]
    assert "quick_start" not in graph[""]  # the package's public names load lazily, in a function
    assert part_of("data.dataset") == "data" and part_of("data.stats") == "apps" and part_of("serve.http") == "apps"


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_load_neither_torch_nor_recbole(module: str) -> None:
    code = f"import sys, recbole_tasrec.{module}; print(sorted({{'torch', 'recbole'}} & set(sys.modules)))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"

"""The project's imports flow one way (docs: README "Layout"): ``train.py -> tasks -> datamodules
-> onlstm``, and inside ``onlstm`` the model (cell, stack, regularizers, lm) and the analysis
(``onlstm.parsing``) -> ``onlstm.ops``; ``onlstm`` imports none of tasks, datamodules, Lightning,
Hydra or wandb; and there is no import cycle. Imports are read with ``ast`` from the source, lazy
ones inside functions included, so a cycle held together by a function-level import fails too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("onlstm", "tasks", "datamodules")
ENTRY_POINTS = ("train", "eval")  # train.py, eval.py: they come last
FORBIDDEN_IN_ONLSTM = ("tasks", "datamodules", *ENTRY_POINTS, "lightning", "pytorch_lightning", "hydra", "omegaconf", "wandb")
MODEL = ("onlstm", "onlstm.cell", "onlstm.stack", "onlstm.regularizers", "onlstm.lm", "onlstm.parsing")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module of the project's packages, and the entry points."""
    modules = {name: root / f"{name}.py" for name in ENTRY_POINTS if (root / f"{name}.py").is_file()}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``name`` imports anywhere in its source (module level, inside
    functions, under ``if``), and the outside top-level packages it imports, with a ``!`` prefix."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def project_target(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def add(dotted: str) -> None:
        target = project_target(dotted)
        found.add(target if target is not None else "!" + dotted.split(".")[0])

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                full = f"{source}.{alias.name}"
                add(full if full in modules else source)
    found.discard(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith("!"):
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            bare = target.lstrip("!")
            if _in(module, ("onlstm",)) and _in(bare, FORBIDDEN_IN_ONLSTM):
                problems.append(f"{module} imports {bare}: the library knows nothing of tasks, data or Lightning/Hydra/wandb")
            if _in(module, ("onlstm.ops",)) and not target.startswith("!") and _in(target, MODEL) and not _in(target, ("onlstm.ops",)):
                problems.append(f"{module} imports {target}: the ops take tensors, the model imports the ops, not back")
            if _in(module, ("datamodules",)) and _in(bare, ("tasks", *ENTRY_POINTS)):
                problems.append(f"{module} imports {bare}: datamodules come before tasks")
            if _in(module, ("tasks",)) and bare in ENTRY_POINTS:
                problems.append(f"{module} imports {bare}: the entry points come last")
    return problems


def test_the_graph_sees_every_package_and_lazy_imports():
    graph = import_graph()
    assert {"train", "eval", "onlstm", "onlstm.ops", "onlstm.parsing", "tasks", "datamodules"} <= graph.keys()
    assert "onlstm.ops.triton_kernels" in graph["onlstm.ops"]  # imported inside a function
    assert "onlstm.ops" in graph["onlstm.stack"] and "!torch" in graph["onlstm.stack"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_flow_one_way():
    problems = layering_violations(import_graph())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "files,expected",
    [
        ({"onlstm/__init__.py": "", "onlstm/a.py": "def f():\n    from onlstm import b\n", "onlstm/b.py": "import onlstm.a\n"},
         ["onlstm.a", "onlstm.b", "onlstm.a"]),
        ({"onlstm/__init__.py": "", "onlstm/a.py": "from .b import x\n", "onlstm/b.py": "from . import a\n"},
         ["onlstm.a", "onlstm.b", "onlstm.a"]),
        ({"onlstm/__init__.py": "", "onlstm/a.py": "import torch\n", "onlstm/b.py": "from onlstm.a import f\n"}, None),
    ],
    ids=["lazy", "relative", "none"],
)
def test_cycle_finder_on_made_up_packages(tmp_path, files, expected):
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    (tmp_path / "train.py").write_text("")
    assert find_cycle(import_graph(tmp_path)) == expected


def test_layering_finds_a_forbidden_import(tmp_path):
    for relative, text in {
        "onlstm/__init__.py": "",
        "onlstm/stack.py": "",
        "onlstm/ops/__init__.py": "def f():\n    from onlstm.stack import X\n",
        "onlstm/lm.py": "import pytorch_lightning\n",
        "train.py": "",
    }.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    problems = layering_violations(import_graph(tmp_path))
    assert any("onlstm.ops imports onlstm.stack" in p for p in problems)
    assert any("onlstm.lm imports pytorch_lightning" in p for p in problems)

"""The project's imports flow one way (docs: README "Layout"): ``train.py -> tasks -> datamodules
-> onlstm``, and inside ``onlstm`` the model (cell, stack, regularizers, lm) and the analysis
(``onlstm.parsing``) -> ``onlstm.ops``; ``onlstm`` imports none of tasks, datamodules, Lightning,
Hydra or wandb; and there is no import cycle. Inside ``tasks``: the task modules (the top level)
may use the run machinery (``tasks.jobs``), which imports no task module (it builds tasks from
their configs' ``_target_``); the offline tools (``tasks.reports``) import only the run-folder
module of ``tasks.jobs``, ``onlstm`` and each other (no task module, no Lightning), and the
run-folder module imports nothing heavy. Imports are read with ``ast`` from the source, lazy ones
inside functions included, so a cycle held together by a function-level import fails too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("onlstm", "tasks", "datamodules")
ENTRY_POINTS = ("train", "eval")  # train.py, eval.py: they come last
FORBIDDEN_IN_ONLSTM = ("tasks", "datamodules", *ENTRY_POINTS, "lightning", "pytorch_lightning", "hydra", "omegaconf", "wandb")
MODEL = ("onlstm", "onlstm.cell", "onlstm.stack", "onlstm.regularizers", "onlstm.lm", "onlstm.parsing",
         "onlstm.cuda_graphs", "onlstm.checkpoints", "onlstm.padding", "onlstm.figures", "onlstm.classifier")
JOBS, REPORTS, RUN_FOLDER = "tasks.jobs", "tasks.reports", "tasks.jobs.run_folder"
LIGHTNING = ("pytorch_lightning", "lightning", "lightning_fabric")
HEAVY = ("torch", *LIGHTNING, "hydra", "wandb", "matplotlib", "scipy")  # what the run-folder module must not import


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


def task_modules(graph: dict[str, set[str]]) -> set[str]:
    """The modules at the top of ``tasks`` (not its subpackages): the task LightningModules and
    their own helpers."""
    packages = {m.rpartition(".")[0] for m in graph if m.count(".") >= 2}
    return {m for m in graph if m.startswith("tasks.") and m.count(".") == 1 and m not in packages}


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    tasks_top = task_modules(graph)
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
            if _in(module, (JOBS,)) and target in tasks_top:
                problems.append(f"{module} imports {target}: the run machinery builds tasks from their configs' "
                                "_target_s and imports no task module")
            if _in(module, (REPORTS,)) and not target.startswith("!") and not (
                    _in(target, ("onlstm", REPORTS)) or target == RUN_FOLDER):
                problems.append(f"{module} imports {target}: an offline tool imports only {RUN_FOLDER}, onlstm and "
                                "the other offline tools")
            if _in(module, (REPORTS,)) and target.startswith("!") and _in(bare, LIGHTNING):
                problems.append(f"{module} imports {bare}: an offline tool reads run folders without Lightning")
            if module == RUN_FOLDER and (not target.startswith("!") or _in(bare, HEAVY)):
                problems.append(f"{module} imports {bare}: the run-folder module, which offline tools import, "
                                "imports nothing heavy and nothing of the project")
    return problems


def test_the_graph_sees_every_package_and_lazy_imports():
    graph = import_graph()
    assert {"train", "eval", "onlstm", "onlstm.ops", "onlstm.parsing", "tasks", "datamodules"} <= graph.keys()
    assert task_modules(graph) == {"tasks.language_modeling", "tasks.logical_inference", "tasks.syntactic_evaluation",
                                   "tasks.unsupervised_parsing", "tasks.listops", "tasks.classification"}
    assert "onlstm.ops.triton_kernels" in graph["onlstm.ops"]  # imported inside a function
    assert "onlstm.ops" in graph["onlstm.stack"] and "!torch" in graph["onlstm.stack"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_flow_one_way():
    problems = layering_violations(import_graph())
    assert not problems, "\n".join(problems)


def write_tree(root: Path, files: dict[str, str]) -> None:
    """A made-up project: each relative path with its source."""
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


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
    write_tree(tmp_path, {**files, "train.py": ""})
    assert find_cycle(import_graph(tmp_path)) == expected


def test_layering_finds_a_forbidden_import(tmp_path):
    write_tree(tmp_path, {
        "onlstm/__init__.py": "",
        "onlstm/stack.py": "",
        "onlstm/ops/__init__.py": "def f():\n    from onlstm.stack import X\n",
        "onlstm/lm.py": "import pytorch_lightning\n",
        "train.py": "",
    })
    problems = layering_violations(import_graph(tmp_path))
    assert any("onlstm.ops imports onlstm.stack" in p for p in problems)
    assert any("onlstm.lm imports pytorch_lightning" in p for p in problems)


def test_the_tasks_rules_find_each_forbidden_import(tmp_path):
    """A runner that imports a task module, offline tools that import the Lightning side of the run
    machinery, a task module or Lightning, and a run-folder module that imports torch are each
    named; a task module that uses the run machinery and a tool that reads run folders are not."""
    write_tree(tmp_path, {
        "tasks/__init__.py": "",
        "tasks/language_modeling.py": "from tasks.jobs.contract import TaskModule\n",
        "tasks/jobs/__init__.py": "",
        "tasks/jobs/contract.py": "",
        "tasks/jobs/run_folder.py": "def f():\n    import torch\n",
        "tasks/jobs/runner.py": "def build():\n    from tasks.language_modeling import LanguageModelingTask\n",
        "tasks/reports/__init__.py": "",
        "tasks/reports/good.py": "from tasks.jobs import run_folder\nfrom tasks.reports import plots\nimport onlstm\n",
        "tasks/reports/plots.py": "import yaml\n",
        "tasks/reports/bad.py": "from tasks.jobs.contract import TaskModule\nimport tasks.language_modeling\n",
        "tasks/reports/heavy.py": "import pytorch_lightning\n",
        "onlstm/__init__.py": "",
        "train.py": "",
    })
    problems = layering_violations(import_graph(tmp_path))
    assert sorted(p.split(":")[0] for p in problems) == [
        "tasks.jobs.run_folder imports torch",
        "tasks.jobs.runner imports tasks.language_modeling",
        "tasks.reports.bad imports tasks.jobs.contract",
        "tasks.reports.bad imports tasks.language_modeling",
        "tasks.reports.heavy imports pytorch_lightning",
    ]

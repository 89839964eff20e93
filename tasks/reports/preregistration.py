"""The pre-registered plans of ``docs/preregistration.md`` and which runs count for them.

Each question of the plan carries a machine-readable block (a fenced ``yaml`` block whose first key
is ``plan: <name>``): the sweep's entry point and experiment, the swept values (seeds, models or
checkpoints), settings its runs must have, and the evaluation sweeps that belong to it. A later,
dated block with the same name replaces an earlier one (the document only grows).

A run counts for a plan only when

- its code commit (``done.json``) is the commit that added the plan's block or a descendant of it,
  with no local changes: code written before the plan, or a run of edited code, is not what was
  planned;
- its command-line overrides are exactly the plan's: ``experiment=<the plan's>``, and one planned
  value for each swept key (a secondary seed only where the caller allows it), nothing else;
- its composed config has every setting the plan names.

The report asks :func:`run_problems` and prints no confirmatory verdict for runs that fail.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from omegaconf import OmegaConf

PLAN_FILE = Path("docs") / "preregistration.md"
_BLOCK = re.compile(r"^```yaml\n(plan: .*?)^```", re.MULTILINE | re.DOTALL)


class PlanError(ValueError):
    """A plan block that cannot be read; the message names the file and the block."""


@dataclass(frozen=True)
class Sweep:
    entry: str  # "train" or "eval": the script that runs it
    experiment: str
    swept: dict[str, tuple[str, ...]]  # key -> planned values, as the command line spells them
    config: dict[str, Any] = field(default_factory=dict)  # dotted key -> the value every run must have


@dataclass(frozen=True)
class Plan:
    name: str
    sweeps: tuple[Sweep, ...]  # the training sweep first, then the evaluations of its runs
    secondary_seeds: tuple[str, ...]
    primary: dict[str, Any]
    commit: str | None  # full hash of the commit that added this block; None: not committed


class RunLike(Protocol):
    """What :func:`run_problems` reads of a run (the report's run record has these)."""
    config: dict
    overrides: list[str]
    entry: str | None
    record: dict | None


def _sweep(raw: Mapping, where: str) -> Sweep:
    try:
        swept = {str(k): tuple(str(v) for v in values) for k, values in raw["swept"].items()}
        return Sweep(str(raw["entry"]), str(raw["experiment"]), swept, dict(raw.get("config") or {}))
    except (KeyError, TypeError, AttributeError) as err:
        raise PlanError(f"{where}: a sweep needs entry, experiment and swept (key: [values]); {type(err).__name__}: {err}") from None


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)


def block_commit(path: Path, name: str) -> str | None:
    """The newest commit that added a ``plan: <name>`` block to ``path`` (the commit of the block in
    force), or None when the committed file does not hold as many such blocks as the file on disk."""
    path = path.resolve()
    repo = path.parent
    marker = f"plan: {name}"
    on_disk = path.read_text().count(f"```yaml\n{marker}\n")
    shown = _git(repo, "show", f"HEAD:./{path.name}")
    committed = shown.stdout.count(f"```yaml\n{marker}\n") if shown.returncode == 0 else 0
    if committed == 0 or committed != on_disk:
        return None
    log = _git(repo, "log", "--format=%H", "-S", f"```yaml\n{marker}\n", "--", path.name)
    commits = log.stdout.split()
    return commits[0] if commits else None


def read_plans(path: str | Path = PLAN_FILE) -> dict[str, Plan]:
    """Every plan in the document, a later block of one name replacing an earlier one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no pre-registration (docs/preregistration.md of the checkout)")
    text = path.read_text()
    plans: dict[str, Plan] = {}
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        where = f"{path}:{line}"
        try:
            raw = yaml.safe_load(match.group(1))
        except yaml.YAMLError as err:
            raise PlanError(f"{where}: the plan block is not valid YAML: {err}") from None
        name = str(raw.get("plan"))
        main = _sweep(raw, f"{where} (plan {name})")
        evaluations = tuple(_sweep(e, f"{where} (plan {name}, evaluation {i + 1})")
                            for i, e in enumerate(raw.get("evaluations") or []))
        plans[name] = Plan(name, (main, *evaluations), tuple(str(s) for s in raw.get("secondary_seeds") or ()),
                           dict(raw.get("primary") or {}), block_commit(path, name))
    return plans


def sweep_of(plan: Plan, run: RunLike) -> Sweep | None:
    """The plan's sweep a run belongs to (by its ``experiment=`` override), or None."""
    experiment = next((o.split("=", 1)[1] for o in run.overrides if o.startswith("experiment=")), None)
    return next((s for s in plan.sweeps if s.experiment == experiment), None)


def _same(planned: Any, actual: Any) -> bool:
    if isinstance(planned, (list, tuple)):
        # a run's config reads a list as an OmegaConf ListConfig: a sequence, not a list
        return (isinstance(actual, Sequence) and not isinstance(actual, str) and len(planned) == len(actual)
                and all(map(_same, planned, actual)))
    try:
        return math.isclose(float(planned), float(actual))
    except (TypeError, ValueError):
        return str(planned) == str(actual)


def run_problems(plan: Plan, run: RunLike, repo: str | Path, allow_secondary: bool = False) -> list[str]:
    """Why ``run`` does not count for ``plan`` (empty: it counts). ``repo``: the git checkout whose
    history holds the plan's and the run's commits."""
    problems = []
    sweep = sweep_of(plan, run)
    if sweep is None:
        return [f"not a sweep of plan {plan.name} (its experiment is none of "
                f"{', '.join(s.experiment for s in plan.sweeps)})"]
    if run.entry is not None and run.entry != sweep.entry:
        problems.append(f"ran with {run.entry}.py, the plan says {sweep.entry}.py")
    commit = (run.record or {}).get("commit", "unknown")
    if plan.commit is None:
        problems.append(f"plan {plan.name} is not committed (no confirmatory verdict for an uncommitted plan)")
    elif commit == "unknown" or commit.endswith("+dirty"):
        problems.append(f"code commit {commit}: not a committed state of the code")
    else:
        ancestry = _git(Path(repo), "merge-base", "--is-ancestor", plan.commit, commit)
        if ancestry.returncode == 1:
            problems.append(f"code commit {commit} does not descend from the plan's commit {plan.commit[:12]}")
        elif ancestry.returncode != 0:
            problems.append(f"code commit {commit} is not in the history of {repo}")
    planned = dict(sweep.swept)
    if allow_secondary and "seed" in planned:
        planned["seed"] = planned["seed"] + plan.secondary_seeds
    given = dict(o.split("=", 1) for o in run.overrides if "=" in o and not o.startswith("experiment="))
    for key, value in given.items():
        if key not in planned:
            problems.append(f"override {key}={value} is not in the plan")
        elif value not in planned[key]:
            problems.append(f"{key}={value} is not a planned value ({', '.join(planned[key])})")
    problems += [f"no {key}= override (the plan sweeps it)" for key in planned if key not in given]
    config = OmegaConf.create(run.config)
    for key, value in sweep.config.items():
        actual = OmegaConf.select(config, key, default=None)
        if not _same(value, actual):
            problems.append(f"{key} is {actual}, the plan says {value}")
    return problems


def role(plan: Plan, run: RunLike) -> str:
    """"primary" for a run of a planned seed, "secondary" for a secondary seed (seed-less sweeps:
    "primary")."""
    seed = next((o.split("=", 1)[1] for o in run.overrides if o.startswith("seed=")), None)
    return "secondary" if seed is not None and seed in plan.secondary_seeds else "primary"


def expected_jobs(sweep: Sweep, values: Sequence[str] | None = None) -> int:
    """How many runs the sweep plans (the product of its swept values; ``values`` replaces the seeds)."""
    count = 1
    for key, planned in sweep.swept.items():
        count *= len(values) if key == "seed" and values is not None else len(planned)
    return count

"""Which runs count for a pre-registered question (docs/preregistration.md): the report prints a
confirmatory verdict only from runs of the planned code, seeds and overrides."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.reports.preregistration import PlanError, read_plans, role, run_problems
from tests.helpers import git

PLAN = """# Pre-registration

Some prose, and a yaml block that is not a plan:

```yaml
just: an example
```

## Question 1 (2026-12-06)

```yaml
plan: logic
entry: train
experiment: evidence2_logic
swept:
  seed: [4, 5]
  model: [onlstm, lstm]
secondary_seeds: [1]
config:
  model.hidden_size: 256
  task.module.lr: 0.001
  callbacks.marks.minutes: [40, 60]
primary:
  test: welch
```
"""

LATER = """
## Question 1, changed (2026-12-07)

```yaml
plan: logic
entry: train
experiment: evidence2_logic
swept:
  seed: [6, 7]
  model: [onlstm, lstm]
```
"""


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "--short=12", "HEAD")


@pytest.fixture
def repo(tmp_path) -> SimpleNamespace:
    """A checkout whose history is: code -> plan -> more code, and a side branch from before the plan."""
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "code.py").write_text("x = 1\n")
    before = commit(root, "code")
    (root / "docs" / "preregistration.md").write_text(PLAN)
    planned = commit(root, "plan")
    (root / "code.py").write_text("x = 2\n")
    after = commit(root, "more code")
    git(root, "checkout", "-q", "-b", "side", before)
    (root / "code.py").write_text("x = 3\n")
    side = commit(root, "side")
    git(root, "checkout", "-q", "main")
    return SimpleNamespace(root=root, plan_file=root / "docs" / "preregistration.md", before=before,
                           planned=planned, after=after, side=side)


def run(commit: str, seed="4", model="onlstm", hidden=256, extra=(), entry="train", marks=(40, 60)) -> SimpleNamespace:
    overrides = ["experiment=evidence2_logic", f"seed={seed}", f"model={model}", *extra]
    config = {"seed": int(seed), "model": {"arch": model, "hidden_size": hidden}, "task": {"module": {"lr": 1e-3}},
              "callbacks": {"marks": {"minutes": list(marks)}}}
    return SimpleNamespace(config=config, overrides=overrides, entry=entry, record={"commit": commit})


def test_a_run_of_the_planned_code_seeds_and_overrides_counts(repo):
    plan = read_plans(repo.plan_file)["logic"]
    assert plan.commit.startswith(repo.planned)
    assert run_problems(plan, run(repo.planned), repo.root) == []  # the plan's own commit
    assert run_problems(plan, run(repo.after, seed="5", model="lstm"), repo.root) == []  # a descendant


@pytest.mark.parametrize("case, expected", [
    ("before", "does not descend from the plan's commit"),
    ("side", "does not descend from the plan's commit"),
    ("dirty", "not a committed state of the code"),
    ("unknown", "not a committed state of the code"),
    ("foreign", "is not in the history of"),
])
def test_code_that_is_not_a_descendant_of_the_plan_does_not_count(repo, case, expected):
    plan = read_plans(repo.plan_file)["logic"]
    commit = {"before": repo.before, "side": repo.side, "dirty": repo.after + "+dirty", "unknown": "unknown",
              "foreign": "0123456789ab"}[case]
    problems = run_problems(plan, run(commit), repo.root)
    assert len(problems) == 1 and expected in problems[0]


def test_seeds_and_overrides_must_be_the_plans(repo):
    plan = read_plans(repo.plan_file)["logic"]
    assert run_problems(plan, run(repo.after, seed="3"), repo.root) == ["seed=3 is not a planned value (4, 5)"]
    assert run_problems(plan, run(repo.after, extra=["trainer=gpu"]), repo.root) == [
        "override trainer=gpu is not in the plan"]
    assert run_problems(plan, run(repo.after, hidden=128), repo.root) == [
        "model.hidden_size is 128, the plan says 256"]
    assert run_problems(plan, run(repo.after, entry="eval"), repo.root) == ["ran with eval.py, the plan says train.py"]
    # a planned list (a run's config reads it as an OmegaConf list): each element, in order
    assert run_problems(plan, run(repo.after, marks=(40, 61)), repo.root) == [
        "callbacks.marks.minutes is [40, 61], the plan says [40, 60]"]
    assert run_problems(plan, run(repo.after, marks=(40,)), repo.root) == [
        "callbacks.marks.minutes is [40], the plan says [40, 60]"]
    no_model = run(repo.after)
    no_model.overrides.remove("model=onlstm")
    assert run_problems(plan, no_model, repo.root) == ["no model= override (the plan sweeps it)"]
    other = run(repo.after)
    other.overrides[0] = "experiment=evidence_logic"
    assert "not a sweep of plan logic" in run_problems(plan, other, repo.root)[0]


def test_secondary_seeds_count_only_where_the_caller_allows_them(repo):
    plan = read_plans(repo.plan_file)["logic"]
    secondary = run(repo.after, seed="1")
    assert run_problems(plan, secondary, repo.root) == ["seed=1 is not a planned value (4, 5)"]
    assert run_problems(plan, secondary, repo.root, allow_secondary=True) == []
    assert role(plan, secondary) == "secondary" and role(plan, run(repo.after)) == "primary"


def test_an_uncommitted_plan_gives_no_confirmatory_runs(repo):
    repo.plan_file.write_text(PLAN + LATER)  # edited on disk, not committed
    plan = read_plans(repo.plan_file)["logic"]
    assert plan.commit is None
    assert run_problems(plan, run(repo.after, seed="6"), repo.root) == [
        "plan logic is not committed (no confirmatory verdict for an uncommitted plan)"]


def test_a_later_dated_block_replaces_the_plan_and_earlier_runs_stop_counting(repo):
    repo.plan_file.write_text(PLAN + LATER)
    changed = commit(repo.root, "plan changed")
    plan = read_plans(repo.plan_file)["logic"]
    assert plan.commit.startswith(changed) and plan.sweeps[0].swept["seed"] == ("6", "7")
    assert "does not descend" in run_problems(plan, run(repo.after, seed="6"), repo.root)[0]
    assert run_problems(plan, run(changed, seed="6"), repo.root) == []


def test_a_broken_plan_block_names_the_file_and_line(tmp_path):
    path = tmp_path / "preregistration.md"
    path.write_text("intro\n\n```yaml\nplan: x\nentry: train\nswept: [1, 2\n```\n")
    with pytest.raises(PlanError, match=r"preregistration.md:3: the plan block is not valid YAML"):
        read_plans(path)
    path.write_text("intro\n```yaml\nplan: x\nentry: train\n```\n")
    with pytest.raises(PlanError, match=r"preregistration.md:2 \(plan x\): a sweep needs entry, experiment and swept"):
        read_plans(path)


def test_the_committed_plan_names_the_round_two_experiments():
    """The plan in this checkout reads, and its sweeps are experiments that exist."""
    root = Path(__file__).resolve().parents[1]
    plans = read_plans(root / "docs" / "preregistration.md")
    assert {"logic_confirmation", "parsing_curve"} <= set(plans)
    for plan in plans.values():
        for sweep in plan.sweeps:
            assert (root / "conf" / "experiment" / f"{sweep.experiment}.yaml").is_file(), sweep.experiment

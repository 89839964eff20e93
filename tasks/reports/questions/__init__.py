"""The questions of the pre-registered plan (docs/preregistration.md), one module each: which runs
count (:mod:`tasks.reports.preregistration`), the primary test the plan names, and the secondary
results labelled as such. What every question does the same way lives here."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from tasks.reports.preregistration import Plan, Sweep, run_problems, sweep_of
from tasks.reports.runs import RunRecord


def num(value: float | None, digits: int = 3) -> str:
    """A table cell: ``-`` for a missing or NaN value."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def plan_commit(plan: Plan) -> str:
    return plan.commit[:12] if plan.commit else "not committed"


def plan_header(plan: Plan, question: int, sweeps: Sequence[Sweep] | None = None, seeds: str = "") -> str:
    """The line that opens a question's section: where its plan is, at which commit, and the
    commands of its sweeps (``seeds``: what follows the seeds list of a single sweep)."""
    sweeps = plan.sweeps if sweeps is None else sweeps
    head = f"Plan: `docs/preregistration.md`, question {question}, committed at {plan_commit(plan)}. "
    commands = [f"`python {s.entry}.py -m experiment={s.experiment}`" for s in sweeps]
    if len(sweeps) == 1:
        return head + f"Sweep: {commands[0]} (seeds {', '.join(sweeps[0].swept['seed'])}{seeds}).\n"
    return head + "Sweeps: " + ", ".join(commands) + ".\n"


def judged_runs(plan: Plan, sweep: Sweep, runs: Sequence[RunRecord], repo: Path,
                allow_secondary: bool = False) -> Iterator[tuple[RunRecord, list[str]]]:
    """Every run of ``sweep`` with the reasons it does not count (empty: it counts); an
    unfinished run never counts."""
    for run in runs:
        if sweep_of(plan, run) is sweep:
            yield run, (run_problems(plan, run, repo, allow_secondary=allow_secondary) if run.finished
                        else ["unfinished"])

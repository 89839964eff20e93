"""Question 1 of ``docs/preregistration.md``: the logic confirmation.

Primary (as planned): per run, the mean test accuracy over Bowman's files test7..test12; ON-LSTM
against LSTM over the planned seeds, Welch's t-test, one-sided, at 5%; printed only when every
planned run has finished and counts. Everything else here is secondary and says so.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from onlstm.figures import ARCH_COLORS, ARCH_NAMES, Curve, accuracy_by_operators
from tasks.reports.preregistration import Plan, expected_jobs, role
from tasks.reports.questions import judged_runs, num, plan_commit, plan_header
from tasks.reports.runs import RunRecord
from tasks.reports.sections import Section
from tasks.reports.statistics import Comparison, fmt, mean_sd, values_of, welch

BOWMAN = tuple(range(7, 13))  # Bowman's test files longer than anything in training
GENERATED = tuple(range(13, 21))  # our generated formulas
PRECONDITION = 0.95  # best validation accuracy on <= 6 operators (round 1's precondition)
ARCHS = ("onlstm", "lstm")
# what the recipe-versus-paper table compares: what the model is and how it is trained
COMPARED = ("model", "task.module", "task.datamodule", "trainer", "callbacks.cpu_time_budget")
NOT_COMPARED = ("data_dir", "seed", "enable_progress_bar", "default_root_dir", "_target_")


def mean_accuracy(run: RunRecord, lengths: Sequence[int]) -> float | None:
    values = [run.metrics.get(f"test/acc_ops{n}") for n in lengths]
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def counted_runs(plan: Plan, runs: Sequence[RunRecord], repo: Path) -> tuple[dict[str, dict[str, list[RunRecord]]], list[list[Any]]]:
    """The finished runs that count, by role ("primary", "secondary") and model, and a row per run
    of the plan's training sweep for the runs table (counted or why not)."""
    counted: dict[str, dict[str, list[RunRecord]]] = {"primary": {a: [] for a in ARCHS}, "secondary": {a: [] for a in ARCHS}}
    rows = []
    judged = judged_runs(plan, plan.sweeps[0], runs, repo, allow_secondary=True)
    for run, problems in sorted(judged, key=lambda item: (role(plan, item[0]), item[0].seed, item[0].arch)):
        if not problems:
            counted[role(plan, run)].setdefault(run.arch, []).append(run)
        rows.append([ARCH_NAMES.get(run.arch, run.arch), run.seed, role(plan, run),
                     "yes" if not problems else "no: " + "; ".join(problems),
                     (run.record or {}).get("commit", "-"), num(run.metrics.get("val/acc_best")),
                     num(mean_accuracy(run, BOWMAN)), num(mean_accuracy(run, GENERATED)),
                     num(run.last("time/cpu_minutes"), 1), num(run.last("step"), 0), num(run.last("epoch"), 0)])
    return counted, rows


def test(groups: dict[str, list[RunRecord]], lengths: Sequence[int]) -> tuple[list[float], list[float], Comparison]:
    on, lstm = ([mean_accuracy(r, lengths) for r in groups[a]] for a in ARCHS)
    return on, lstm, welch(on, lstm, alternative="greater")


def _described(name: str, on: list[float], lstm: list[float], comparison: Comparison) -> str:
    return (f"{name}: ON-LSTM {statistics.fmean(on):.3f}, LSTM {statistics.fmean(lstm):.3f} "
            f"(n = {len(on)} and {len(lstm)}; {comparison.describe(digits=3)})")


def recipe_differences(run_config: dict, paper_config: dict) -> list[list[Any]]:
    """Every setting of ``COMPARED`` where the run's config and the paper's differ: [key, paper, run]."""
    def flat(config: dict) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for prefix in COMPARED:
            node = OmegaConf.select(OmegaConf.create(config), prefix, default=None)
            if node is None:
                continue
            values = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
            items = _flatten(values, prefix) if isinstance(values, dict) else {prefix: values}
            out.update({k: v for k, v in items.items() if not any(part in k for part in NOT_COMPARED)})
        return out

    run, paper = flat(run_config), flat(paper_config)
    return [[key, paper.get(key, "(not set)"), run.get(key, "(not set)")] for key in sorted(set(run) | set(paper))
            if str(run.get(key)) != str(paper.get(key))]


def _flatten(values: dict, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        out.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


def section(plan: Plan, runs: Sequence[RunRecord], repo: Path, round1_table: Path | None = None,
            paper_config: dict | None = None, paper_epoch: Path | None = None) -> Section:
    section = Section("Round 2, question 1: logical inference, the confirmation (pre-registered)")
    sweep = plan.sweeps[0]
    section.text.append(plan_header(plan, 1, seeds=f"; secondary: `seed={','.join(plan.secondary_seeds)}`"))
    counted, rows = counted_runs(plan, runs, repo)
    section.table("logic_confirmation_runs",
                  ["model", "seed", "role", "counts", "commit", "best validation accuracy (<= 6 operators)",
                   "mean accuracy 7-12 operators", "mean accuracy 13-20 operators", "CPU minutes", "steps", "epochs"],
                  rows, "Every run of the sweep; a run counts when it finished with the planned code, seeds and "
                        "settings (docs/preregistration.md, rules).")

    primary = counted["primary"]
    planned = expected_jobs(sweep)
    done = sum(len(v) for v in primary.values())
    if done < planned:
        section.conclude(f"**Question 1 (logic, primary): not decided yet.** {done} of the {planned} planned runs "
                         "have finished and count; the verdict waits for all of them.\n")
    else:
        on, lstm, comparison = test(primary, BOWMAN)
        section.conclude(f"**Question 1 (logic, primary, planned at {plan_commit(plan)}): {comparison.confirmation}.** "
                         + _described("Mean test accuracy over 7-12 operators (Bowman's files), seeds "
                                      + ", ".join(sweep.swept["seed"]), on, lstm, comparison) + ".\n")

    section.text.append("**Secondary results** (planned as secondary; no verdict rests on them):\n")
    members = [r for group in primary.values() for r in group]
    reruns = [r for group in counted["secondary"].values() for r in group]
    if members:
        section.text.append(f"- Precondition (best validation accuracy >= {PRECONDITION}): "
                            + _precondition(members, "these runs stay in the primary test")
                            + (" Seeds " + ", ".join(plan.secondary_seeds) + " run again: "
                               + _precondition(reruns, "these runs stay in the pooled test") if reruns else "")
                            + "\n")
    if all(len(primary[a]) >= 2 for a in ARCHS):
        on, lstm, comparison = test(primary, GENERATED)
        section.text.append("- " + _described("13-20 operators (generated), one-sided as the primary", on, lstm,
                                              comparison) + ".\n")
    pooled = {a: primary[a] + counted["secondary"][a] for a in ARCHS}
    if counted["secondary"]["onlstm"] or counted["secondary"]["lstm"]:
        on, lstm, comparison = test(pooled, BOWMAN)
        section.text.append("- " + _described("Seeds 1-9 pooled (seeds 1-3 run again with the recipe), 7-12 operators",
                                              on, lstm, comparison) + ".\n")
    else:
        section.text.append(f"- Seeds 1-9 pooled: not yet (seeds {', '.join(plan.secondary_seeds)} are run again "
                            "after the primary seeds).\n")

    _accuracy_table_and_figure(section, primary)
    if round1_table is not None:
        _round1_comparison(section, round1_table, counted["secondary"])
    if paper_config is not None and members:
        section.table("logic_recipe_vs_paper", ["setting", "paper (experiment=logic_paper)", "this recipe"],
                      recipe_differences(members[0].config, paper_config),
                      "Every setting of the model, the task and the training where this recipe differs from the "
                      "paper's setup as `experiment=logic_paper` composes it.")
    if paper_epoch is not None and paper_epoch.is_file():
        table = [line for line in paper_epoch.read_text().splitlines() if line.startswith("|")]
        section.text.append(f"What one epoch of the paper's setup costs on this machine (`{paper_epoch.as_posix()}`, "
                            "one thread, CPU seconds):\n\n" + "\n".join(table) + "\n")
    return section


def _precondition(runs: list[RunRecord], kept: str) -> str:
    unmet = [f"{ARCH_NAMES[r.arch]} seed {r.seed} ({r.metrics.get('val/acc_best', math.nan):.3f})"
             for r in sorted(runs, key=lambda r: (r.seed, ARCHS.index(r.arch)))
             if r.metrics.get("val/acc_best", 0.0) < PRECONDITION]
    return f"missed by {'; '.join(unmet)} ({kept})." if unmet else f"met by all {len(runs)} counted runs."


def _accuracy_table_and_figure(section: Section, groups: dict[str, list[RunRecord]]) -> None:
    ops = sorted({int(k[len("test/acc_ops"):]) for a in ARCHS for r in groups[a] for k in r.metrics
                  if k.startswith("test/acc_ops")})
    if not ops:
        return
    section.table("logic_confirmation_by_operators", ["operators", "ON-LSTM accuracy", "LSTM accuracy"],
                  [[n, *(fmt(values_of(groups[a], f"test/acc_ops{n}"), 3) for a in ARCHS)] for n in ops],
                  "Test accuracy per number of operators of the counted primary runs, mean ± sd over seeds "
                  "(0-12: Bowman's test files; 13-20: 300 generated pairs each). Training saw 0-6.")
    curves = []
    for arch in ARCHS:
        points = [(n, *mean_sd(values_of(groups[arch], f"test/acc_ops{n}"))) for n in ops]
        points = [(n, m, 0.0 if math.isnan(s) else s) for n, m, s in points if not math.isnan(m)]
        if points:
            curves.append(Curve(ARCH_NAMES[arch], [(n, m) for n, m, _ in points], [s for *_, s in points],
                                ARCH_COLORS[arch]))
    section.figure("logic_confirmation_by_operators", accuracy_by_operators(curves, ops),
                   "Counted primary runs: mean over seeds, band: ± one standard deviation; shaded: longer than "
                   "training; dotted line: Bowman's test files to its left, generated formulas to its right.")


def _round1_comparison(section: Section, round1_table: Path, reruns: dict[str, list[RunRecord]]) -> None:
    """Round 1's aggregates (its CSV, committed) beside the same seeds run again."""
    if not round1_table.is_file() or not any(reruns.values()):
        return
    rows = []
    with open(round1_table, newline="") as handle:
        round1 = list(csv.DictReader(handle))
    for row in round1:
        n = int(row["operators"])
        rows.append([n, row["ON-LSTM accuracy"], fmt(values_of(reruns["onlstm"], f"test/acc_ops{n}"), 3),
                     row["LSTM accuracy"], fmt(values_of(reruns["lstm"], f"test/acc_ops{n}"), 3)])
    section.table("logic_round1_reruns", ["operators", "ON-LSTM, round 1", "ON-LSTM, seeds 1-3 again",
                                          "LSTM, round 1", "LSTM, seeds 1-3 again"], rows,
                  f"Reproducibility: round 1's seeds 1-3 (`{round1_table.as_posix()}`) and the same seeds run again "
                  "with the same recipe in round 2 (CPU-time budgets: the step counts differ"
                  + _epochs_beside_round1(round1_table.with_name("logic_precondition.csv"), reruns) + ").")


def _epochs_beside_round1(round1_precondition: Path, reruns: dict[str, list[RunRecord]]) -> str:
    """How many epochs each side's 40 CPU-minutes ran (last epoch index, as both reports count
    them): a machine slower per CPU-second trains less in the same budget."""
    if not round1_precondition.is_file():
        return ""
    with open(round1_precondition, newline="") as handle:
        round1 = {row["model"]: row["epochs"] for row in csv.DictReader(handle)}
    again = {a: fmt([r.last("epoch") for r in reruns[a] if r.last("epoch") is not None], 1) for a in ARCHS}
    return ("; epochs in the budget, round 1 (`" + round1_precondition.name + "`): "
            + ", ".join(f"{ARCH_NAMES[a]} {round1.get(ARCH_NAMES[a], '-')}" for a in ARCHS)
            + "; again: " + ", ".join(f"{ARCH_NAMES[a]} {again[a]}" for a in ARCHS))

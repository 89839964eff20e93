"""The ListOps question of ``docs/preregistration.md``: length generalisation, and the trees the
master forget gate induces scored against the expressions' gold trees.

Primary (as planned): per run the accuracy over every test expression longer than the training
expressions (``test/acc_beyond_training``), ON-LSTM against LSTM over the planned seeds, Welch's
t-test, one-sided, at 5%; printed only when every planned run has finished and counts. Also here:
the tuning runs that chose the recipe (docs/listops.md, "Choosing the CPU recipe") and what the rule
written before them picks.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from onlstm.figures import ARCH_COLORS, ARCH_NAMES, Curve, accuracy_figure
from tasks.reports.preregistration import Plan, expected_jobs
from tasks.reports.questions import judged_runs, num, plan_commit, plan_header
from tasks.reports.runs import RunRecord
from tasks.reports.sections import Section, validation_curves
from tasks.reports.statistics import fmt, values_of, welch

ARCHS = ("onlstm", "lstm")
PRIMARY = "test/acc_beyond_training"
SOURCES = ("released", "len200-300", "len500-600", "len900-1000")
TREE_PARSERS = {"ON-LSTM, layer chosen on validation": "", "the same, initial weights": "initial_",
                "right-branching": "right_branching_", "left-branching": "left_branching_",
                "balanced": "balanced_", "random": "random_", "best binary tree (ceiling)": "best_binary_"}
STILL_LEARNING = 0.01  # the tuning rule: a rise of more than this over the last fifth of the budget
SIZES = ("small", "large")  # the tie-break order of the tuning rule


def _setting(run: RunRecord) -> tuple[str, float]:
    config = OmegaConf.create(run.config)
    return str(OmegaConf.select(config, "listops_cpu_size")), float(OmegaConf.select(config, "task.module.lr"))


# ------------------------------------------------------------------------------ the recipe's tuning
def chosen_setting(tuning: Sequence[RunRecord]) -> tuple[tuple[str, float] | None, dict[tuple[str, float], float]]:
    """The rule of docs/listops.md: the (size, learning rate) with the highest mean over the two
    models of their best validation accuracy, a tie going to the smaller size, then the smaller rate;
    only settings that both models finished count. (The chosen setting or None, the means.)"""
    by_setting: dict[tuple[str, float], dict[str, float]] = {}
    for run in tuning:
        if run.finished and "val/acc_best" in run.metrics:
            by_setting.setdefault(_setting(run), {})[run.arch] = run.metrics["val/acc_best"]
    means = {s: statistics.fmean(v.values()) for s, v in by_setting.items() if set(ARCHS) <= set(v)}
    if not means:
        return None, means
    order = sorted(means, key=lambda s: (-means[s], SIZES.index(s[0]) if s[0] in SIZES else len(SIZES), s[1]))
    return order[0], means


def still_learning(run: RunRecord) -> float | None:
    """How much the best validation accuracy rose over the last fifth of the run's CPU time."""
    points = run.curve("time/cpu_minutes", "val/acc")
    if not points:
        return None
    end = points[-1][0]
    early = [v for t, v in points if t <= 0.8 * end]
    return max(v for _, v in points) - (max(early) if early else 0.0)


def tuning_part(section: Section, tuning: Sequence[RunRecord], recipe_runs: Sequence[RunRecord]) -> None:
    if not tuning:
        return
    chosen, means = chosen_setting(tuning)
    rows = [[ARCH_NAMES.get(r.arch, r.arch), *_setting(r), num(r.metrics.get("val/acc_best")),
             num(means.get(_setting(r))), num(still_learning(r)), num(r.last("time/cpu_minutes"), 1),
             "yes" if r.finished else "no", (r.record or {}).get("commit", "-")]
            for r in sorted(tuning, key=lambda r: (_setting(r), r.arch))]
    section.table("listops_tuning", ["model", "size", "learning rate", "best validation accuracy",
                                     "mean of both models", "rise over the last fifth", "CPU minutes", "finished",
                                     "commit"], rows,
                  "The runs that chose the CPU recipe (`python train.py -m experiment=listops_tuning`, seed 141, "
                  "validation data only; the rule: docs/listops.md, \"Choosing the CPU recipe\").")
    if chosen is None:
        section.text.append("The rule picks nothing yet: no setting has finished runs of both models.\n")
        return
    rising = {r.arch: still_learning(r) for r in tuning if r.finished and _setting(r) == chosen}
    budget = 50 if any(v is not None and v > STILL_LEARNING for v in rising.values()) else 25
    line = (f"The rule picks size {chosen[0]}, learning rate {chosen[1]:g} (mean best validation accuracy "
            f"{means[chosen]:.3f}); rise over the last fifth of the budget "
            + ", ".join(f"{ARCH_NAMES[a]} {num(rising[a])}" for a in ARCHS if a in rising)
            + f": the evidence runs get {budget} CPU-minutes.")
    if recipe_runs:
        used = {(_setting(r), OmegaConf.select(OmegaConf.create(r.config), "callbacks.cpu_time_budget.minutes"))
                for r in recipe_runs}
        line += (" The evidence runs use it." if used == {(chosen, budget)} else
                 " The evidence runs use " + "; ".join(f"size {s}, lr {lr:g}, {m} CPU-minutes" for (s, lr), m in used)
                 + ", not what the rule picks.")
    section.text.append(line + "\n")
    figure, _ = validation_curves([r for r in tuning if r.finished], "val/acc", "ListOps tuning: validation accuracy",
                                  "validation accuracy (4-100 tokens)")
    section.figure("listops_tuning_curves", figure, "Validation accuracy of every tuning run against its CPU minutes.")


# ------------------------------------------------------------------------------ the question
def section(plan: Plan, runs: Sequence[RunRecord], repo: Path, tuning: Sequence[RunRecord] = ()) -> Section:
    section = Section("Round 2, question 3: ListOps, longer expressions and trees against gold trees (pre-registered)")
    sweep = plan.sweeps[0]
    section.text.append(plan_header(plan, 3))
    groups: dict[str, list[RunRecord]] = {a: [] for a in ARCHS}
    rows = []
    judged = sorted(judged_runs(plan, sweep, runs, repo), key=lambda item: (item[0].seed, item[0].arch))
    members = [run for run, _ in judged]
    for run, problems in judged:
        if not problems:
            groups.setdefault(run.arch, []).append(run)
        m = run.metrics
        rows.append([ARCH_NAMES.get(run.arch, run.arch), run.seed, "yes" if not problems else "no: " + "; ".join(problems),
                     (run.record or {}).get("commit", "-"), num(m.get("val/acc_best")), num(still_learning(run)),
                     num(m.get(PRIMARY)),
                     *(num(m.get(f"test/acc_{s}")) for s in SOURCES), num(m.get("test/tree_f1_released")),
                     num(m.get("test/tree_layer"), 0), num(run.last("time/cpu_minutes"), 1), num(run.last("step"), 0)])
    section.table("listops_runs", ["model", "seed", "counts", "commit", "best validation accuracy (4-100 tokens)",
                                   "its rise over the last fifth of the run", "accuracy beyond training (> 100 tokens)",
                                   *(f"accuracy, {s}" for s in SOURCES),
                                   "tree F1, released", "tree layer", "CPU minutes", "steps"], rows,
                  "Every run of the sweep; a run counts when it finished with the planned code, seeds and settings.")
    planned, done = expected_jobs(sweep), sum(len(v) for v in groups.values())
    if done < planned:
        section.conclude(f"**Question 3 (ListOps, primary): not decided yet.** {done} of the {planned} planned runs "
                         "have finished and count; the verdict waits for all of them.\n")
    else:
        on, lstm = (values_of(groups[a], PRIMARY) for a in ARCHS)
        comparison = welch(on, lstm, alternative="greater")
        section.conclude(f"**Question 3 (ListOps, primary, planned at {plan_commit(plan)}): {comparison.confirmation}.** "
                         f"Accuracy on the test expressions longer than training (> 100 tokens: the released file's "
                         f"and the generated 200-1000 tokens), seeds {', '.join(sweep.swept['seed'])}: ON-LSTM "
                         f"{statistics.fmean(on):.3f}, LSTM {statistics.fmean(lstm):.3f} "
                         f"(n = {len(on)} and {len(lstm)}; {comparison.describe(digits=3)}).\n")
    _secondary(section, groups)
    tuning_part(section, [r for r in tuning if r.kind == "listops"], members)
    return section


def _secondary(section: Section, groups: dict[str, list[RunRecord]]) -> None:
    if not any(groups.values()):
        return
    section.text.append("**Secondary results** (planned as secondary; no verdict rests on them):\n")
    if all(len(groups[a]) >= 2 for a in ARCHS):
        on, lstm = (values_of(groups[a], "val/acc_best") for a in ARCHS)
        section.text.append(f"- In distribution (best validation accuracy, 4-100 tokens): ON-LSTM {statistics.fmean(on):.3f}, "
                            f"LSTM {statistics.fmean(lstm):.3f} ({welch(on, lstm).describe(digits=3)}).\n")
    section.table("listops_accuracy_by_source", ["test set", "ON-LSTM accuracy", "LSTM accuracy"],
                  [[name, *(fmt(values_of(groups[a], key), 3) for a in ARCHS)]
                   for name, key in [("beyond training (> 100 tokens)", PRIMARY), ("all test expressions", "test/acc")]
                   + [(s, f"test/acc_{s}") for s in SOURCES]],
                  "Test accuracy of the counted runs, mean ± sd over seeds.")
    _by_table(section, groups, "depth", "listops_accuracy_by_depth", "depth (operators nested)")
    _by_table(section, groups, "length", "listops_accuracy_by_length", "length (tokens)")
    trees = groups["onlstm"]
    if trees:
        sources = ("valid", *SOURCES)
        section.table("listops_tree_f1", ["parser", *(f"sentence F1 %, {s}" for s in sources)],
                      [[name, *(fmt(values_of(trees, f"test/tree_f1_{prefix}{s}"), 1, 100) for s in sources)]
                       for name, prefix in TREE_PARSERS.items()],
                      "Trees of the counted ON-LSTM runs from their master-forget-gate distances (the layer chosen "
                      "on the validation split) against the expressions' gold trees, beside baselines on the same "
                      "expressions and the best any binary tree can reach against the n-ary gold trees; mean ± sd "
                      "over seeds (docs/listops.md, \"How trees are scored\").")


def _by_table(section: Section, groups: dict[str, list[RunRecord]], name: str, table: str, label: str) -> None:
    """Accuracy by depth (or length bucket) of each test source, mean over the counted runs."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for arch in ARCHS:
        for run in groups[arch]:
            for row in run.table(f"test/acc_by_{name}"):
                cells.setdefault((row["source"], row[name]), {}).setdefault(arch, []).append(float(row["accuracy"]))
    if not cells:
        return
    keys = sorted(cells, key=lambda k: (k[0], _order(k[1])))
    section.table(table, ["test set", label, "ON-LSTM accuracy", "LSTM accuracy"],
                  [[source, value, *(fmt(cells[source, value].get(a, []), 3) for a in ARCHS)] for source, value in keys],
                  f"Test accuracy by {name}, mean ± sd over the counted runs (each run's `test/acc_by_{name}` table).")
    if name == "depth":
        curves = [Curve(ARCH_NAMES[a], [(int(v), statistics.fmean(cells["released", v][a]))
                                        for s, v in keys if s == "released" and cells[s, v].get(a)], color=ARCH_COLORS[a])
                  for a in ARCHS]
        depths = sorted({int(v) for s, v in keys if s == "released"})
        section.figure("listops_accuracy_by_depth",
                       accuracy_figure([c for c in curves if c.points], "ListOps: accuracy by depth (released test file)",
                                       "depth (operators nested)", ticks=[(d, str(d)) for d in depths]),
                       "Accuracy on the released test file by depth, mean over the counted runs of each model.")


def _order(value: str) -> Any:
    """Depths as numbers, length buckets ("101-200") by their lower end."""
    head = value.split("-")[0].lstrip("<>= ")
    return float(head) if head.replace(".", "", 1).isdigit() else value

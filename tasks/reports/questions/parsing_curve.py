"""Question 2 of ``docs/preregistration.md``: parsing as the language model trains longer.

The language models keep their best checkpoint at fixed CPU-time marks; each kept checkpoint is
parsed (and its test perplexity measured) by the plan's evaluation sweeps. Primary (as planned):
test sentence F1 (all lengths) of the last mark's checkpoints against right-branching on the same
sentences, one-sample t-test, one-sided, at 5%; printed only when every planned run counts.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from tasks.reports.preregistration import Plan, Sweep, expected_jobs
from tasks.reports.questions import judged_runs, num, plan_commit, plan_header
from tasks.reports.runs import RunRecord
from tasks.reports.sections import Section
from tasks.reports.statistics import Comparison, against_constant, welch

MARK = re.compile(r"best_cpu(\d+(?:\.\d+)?)min")
SCORES = {"all lengths": "test/", "<= 10 words": "test/wsj10/"}


def mark_minutes(weights: str) -> float | None:
    """The CPU minutes of a kept checkpoint's name (``best_cpu040min`` -> 40.0); None for ``initial``."""
    match = MARK.fullmatch(weights)
    return float(match.group(1)) if match else None


def _weights(run: RunRecord) -> str:
    return str(run.config.get("lm_weights", ""))


def _counted(plan: Plan, sweep: Sweep, runs: Sequence[RunRecord], repo: Path) -> tuple[list[RunRecord], list[str]]:
    """The finished runs of ``sweep`` that count, and a line per run that does not (why)."""
    counted, refused = [], []
    for run, problems in judged_runs(plan, sweep, runs, repo):
        if problems:
            refused.append(f"{run.folder.name}: {'; '.join(problems)}")
        else:
            counted.append(run)
    return counted, refused


def _f1(run: RunRecord | None, prefix: str, suffix: str = "") -> float | None:
    if run is None:
        return None
    value = run.metrics.get(f"{prefix}f1_sentence{suffix}")
    return None if value is None else 100 * value


def section(plan: Plan, runs: Sequence[RunRecord], repo: Path) -> Section:
    section = Section("Round 2, question 2: parsing as the language model trains longer (pre-registered)")
    training, parsing, perplexity = plan.sweeps  # the plan's order: the LMs, then the two evaluations
    section.text.append(plan_header(plan, 2))
    lms, refused = _counted(plan, training, runs, repo)
    parsed, refused_parsing = _counted(plan, parsing, runs, repo)
    tested, refused_ppl = _counted(plan, perplexity, runs, repo)
    refused += refused_parsing + refused_ppl
    if refused:
        section.text.append("Runs that do not count: " + "; ".join(refused) + ".\n")

    section.table("parsing_curve_language_models",
                  ["seed", "commit", "CPU minutes", "steps", "best validation ppl", "test ppl (best at the end)"],
                  [[r.seed, r.record.get("commit"), num(r.last("time/cpu_minutes"), 1), num(r.last("step"), 0),
                    num(r.metrics.get("val/ppl_best"), 1), num(r.metrics.get("test/ppl"), 1)]
                   for r in sorted(lms, key=lambda r: r.seed)],
                  "The ON-LSTM language models (PTB) that count, as they ended.")

    marks = sorted({m for w in parsing.swept["lm_weights"] if (m := mark_minutes(w)) is not None})
    by = {(r.seed, _weights(r)): r for r in parsed}
    ppl = {(r.seed, _weights(r)): r.metrics.get("test/ppl") for r in tested}
    seeds = sorted({int(s) for s in parsing.swept["seed"]})
    rows = []
    for seed in seeds:
        for weights in parsing.swept["lm_weights"]:
            run = by.get((seed, weights))
            minutes = mark_minutes(weights)
            rows.append([seed, "initial weights" if minutes is None else f"{minutes / 60:.2f}",
                         *(num(_f1(run, p), 1) for p in SCORES.values()),
                         num(run.metrics.get("test/chosen_layer") if run else None, 0),
                         num(ppl.get((seed, weights)), 1)])
    right = {name: [_f1(r, p, "_right_branching") for r in parsed] for name, p in SCORES.items()}
    right = {name: statistics.fmean(v) for name, v in right.items() if v and None not in v}
    section.table("parsing_curve", ["seed", "CPU hours (best checkpoint kept then)", "test sentence F1 %, all lengths",
                                    "test sentence F1 %, <= 10 words", "chosen layer (on dev)", "test ppl"], rows,
                  "Every kept checkpoint of every counted language model, parsed with round 1's protocol (layer "
                  "chosen on wsj_0001-0099, scored on wsj_0100-0199)."
                  + (" Right-branching on the same sentences: " + ", ".join(f"{name} {value:.1f}"
                                                                           for name, value in right.items()) + "."
                     if right else ""))

    final = f"best_cpu{marks[-1]:03g}min" if marks else None
    at_final = [by[(s, final)] for s in seeds if (s, final) in by]
    planned = expected_jobs(training) + expected_jobs(parsing) + expected_jobs(perplexity)
    counted = len(lms) + len(parsed) + len(tested)
    if counted < planned or len(at_final) < len(seeds):
        section.conclude(f"**Question 2 (parsing, primary): not decided yet.** {counted} of the {planned} planned runs "
                         "(language models, parsing and perplexity evaluations) have finished and count; the verdict "
                         "waits for all of them.\n")
    else:
        scores = [_f1(r, "test/") for r in at_final]
        comparison = against_constant(scores, right["all lengths"], alternative="greater")
        section.conclude(f"**Question 2 (parsing, primary, planned at {plan_commit(plan)}): {comparison.confirmation}.** "
                         f"Test sentence F1 (all lengths) of the checkpoints kept at {marks[-1]:g} CPU-minutes: "
                         f"{statistics.fmean(scores):.1f} against right-branching {right['all lengths']:.1f} "
                         f"({comparison.describe()}).\n")
    _secondary(section, by, seeds, marks, right)
    if parsed or tested:
        section.figure("parsing_curve", _figure(by, ppl, seeds, marks, right),
                       "Test sentence F1 (all lengths; <= 10 words) and test perplexity of the checkpoint kept at each "
                       "CPU-time mark, one line per seed; dashed: right-branching; dotted: the same seed's initial weights.")
    return section


def _secondary(section: Section, by: dict, seeds: list[int], marks: list[float], right: dict[str, float]) -> None:
    lines = []
    for minutes in marks:
        weights = f"best_cpu{minutes:03g}min"
        for name, prefix in SCORES.items():
            scores = [v for s in seeds if (v := _f1(by.get((s, weights)), prefix)) is not None]
            if len(scores) >= 2 and name in right:
                comparison: Comparison = against_constant(scores, right[name], alternative="greater")
                lines.append(f"{minutes:g} CPU-min, {name}: {statistics.fmean(scores):.1f} against right-branching "
                             f"{right[name]:.1f} ({comparison.describe()})")
    if marks:
        final = f"best_cpu{marks[-1]:03g}min"
        trained = [v for s in seeds if (v := _f1(by.get((s, final)), "test/")) is not None]
        initial = [v for s in seeds if (v := _f1(by.get((s, "initial")), "test/")) is not None]
        if len(trained) >= 2 and len(initial) >= 2:
            gain = welch(trained, initial)
            lines.append(f"gain over the initial weights at {marks[-1]:g} CPU-min, all lengths: {gain.describe()}")
    if lines:
        section.text.append("**Secondary results** (descriptive: no correction for the number of marks, no claim):\n\n"
                            + "\n".join(f"- {line}." for line in lines) + "\n")


def _figure(by: dict, ppl: dict, seeds: list[int], marks: list[float], right: dict[str, float]) -> Figure:
    figure = Figure(figsize=(12.0, 3.6))
    axes = list(figure.subplots(1, 3))
    hours = [m / 60 for m in marks]
    for k, seed in enumerate(seeds):
        color = f"C{k}"
        for ax, prefix in zip(axes[:2], SCORES.values()):
            points = [(h, v) for h, m in zip(hours, marks) if (v := _f1(by.get((seed, f"best_cpu{m:03g}min")), prefix)) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", color=color, label=f"seed {seed}")
            initial = _f1(by.get((seed, "initial")), prefix)
            if initial is not None:
                ax.axhline(initial, color=color, linestyle=":", linewidth=1)
        points = [(h, v) for h, m in zip(hours, marks) if (v := ppl.get((seed, f"best_cpu{m:03g}min"))) is not None]
        if points:
            axes[2].plot(*zip(*points), marker="o", color=color, label=f"seed {seed}")
    for ax, name in zip(axes[:2], SCORES):
        if name in right:
            ax.axhline(right[name], color="black", linestyle="--", linewidth=1, label="right-branching")
        ax.set_title(f"test sentence F1 %, {name}", fontsize=10)
        ax.set_xlabel("CPU hours (one thread)")
        ax.legend(fontsize=7)
    axes[2].set_title("test perplexity", fontsize=10)
    axes[2].set_xlabel("CPU hours (one thread)")
    axes[2].set_yscale("log")
    figure.tight_layout()
    return figure

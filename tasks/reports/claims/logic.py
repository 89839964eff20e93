"""Claim 3 (the paper's Section 6.4, Figure 2): an ON-LSTM generalises to longer formulas better
than an LSTM (test accuracy by number of operators; Bowman's test files and generated lengths
judged apart), provided both models learned the formulas they trained on."""

from __future__ import annotations

import math
import statistics
from typing import Any

from onlstm.figures import ARCH_COLORS, ARCH_NAMES, BOWMAN_MAX_OPERATORS, Curve, accuracy_by_operators
from tasks.reports.runs import RunRecord
from tasks.reports.sections import Section, validation_curves
from tasks.reports.statistics import by_arch, fmt, mean_sd, per_seed, seeds_note, values_of, welch

LOGIC_PRECONDITION = 0.95  # validation accuracy on <= 6 operators both models must reach


def section(runs: list[RunRecord]) -> Section:
    section = Section("3. Logical inference: an ON-LSTM generalises to longer formulas better than an LSTM")
    groups = by_arch(r for r in runs if r.finished)
    ops = sorted({int(k[len("test/acc_ops"):]) for r in runs for k in r.metrics if k.startswith("test/acc_ops")})
    rows = []
    for n in ops:
        row: list[Any] = [n]
        for arch in ("onlstm", "lstm"):
            row.append(fmt(values_of(groups[arch], f"test/acc_ops{n}"), 3))
        rows.append(row)
    section.table("logic_accuracy_by_operators", ["operators", "ON-LSTM accuracy", "LSTM accuracy"], rows,
                  "Test accuracy per number of operators (0-12: Bowman's test files; 13-20: 300 generated pairs "
                  "each, the same for every run). Training saw 0-6.")
    pre_rows = [[ARCH_NAMES[a], len(m), fmt(values_of(m, "val/acc_best"), 3),
                 per_seed(m, lambda r: r.metrics.get("val/acc_best"), 3),
                 fmt([r.last("time/cpu_minutes") for r in m if r.last("time/cpu_minutes") is not None], 1),
                 fmt([r.last("epoch") for r in m if r.last("epoch") is not None], 1)]
                for a, m in groups.items() if m]
    section.table("logic_precondition", ["model", "seeds", "best validation accuracy (<= 6 operators)", "per seed",
                                         "CPU minutes", "epochs"], pre_rows,
                  f"Precondition: both models learn what they train on (validation accuracy >= {LOGIC_PRECONDITION}).")

    curves = []
    for arch in ("onlstm", "lstm"):
        points = [(n, mean_sd(values_of(groups[arch], f"test/acc_ops{n}"))) for n in ops]
        points = [(n, m, s) for n, (m, s) in points if not math.isnan(m)]
        if points:
            curves.append(Curve(ARCH_NAMES[arch], [(n, m) for n, m, _ in points],
                                [0.0 if math.isnan(s) else s for _, _, s in points], ARCH_COLORS[arch]))
    figure = accuracy_by_operators(curves, ops)
    section.figure("logic_accuracy_by_operators", figure,
                   "Mean over seeds, band: +- one standard deviation; shaded: longer than training; "
                   "dotted line: Bowman's test files to its left, generated formulas to its right.")

    figure, axes = validation_curves([r for r in runs if r.finished], "val/acc", "Validation accuracy against training time",
                                     "validation accuracy (<= 6 operators)")
    axes.axhline(LOGIC_PRECONDITION, color="black", linestyle=":", linewidth=1)
    section.figure("logic_validation_curves", figure, "Validation accuracy at every validation, each seed a line.")

    missing = seeds_note(groups)
    unmet = [f"{ARCH_NAMES[a]} seed {r.seed}: {r.metrics.get('val/acc_best', math.nan):.3f}"
             for a, m in groups.items() for r in m if r.metrics.get("val/acc_best", 0.0) < LOGIC_PRECONDITION]
    if missing:
        section.conclude(f"**Not shown yet**: {missing}.\n")
        return section
    if unmet:
        section.conclude(
            f"**Verdict: not shown at this scale.** The precondition is not met: validation accuracy below "
            f"{LOGIC_PRECONDITION} ({'; '.join(unmet)}), so the models have not learned the formulas they train on "
            "and their accuracy on longer ones says nothing about generalisation.\n")
    # The paper's test lengths and the generated ones can disagree; a single mean over both would let
    # the eight generated lengths outvote the six of Bowman's files, so each range gets its own verdict.
    ranges = {"Bowman's test files": [n for n in ops if 6 < n <= BOWMAN_MAX_OPERATORS],
              "generated": [n for n in ops if n > BOWMAN_MAX_OPERATORS]}
    for source, lengths in ranges.items():
        if not lengths:
            continue
        name = f"{lengths[0]}-{lengths[-1]} operators, {source}"
        on, lstm = ([statistics.fmean(r.metrics[f"test/acc_ops{n}"] for n in lengths) for r in groups[arch]]
                    for arch in ("onlstm", "lstm"))
        comparison = welch(on, lstm)
        numbers = (f"Mean accuracy over {lengths[0]}-{lengths[-1]} operators: ON-LSTM {statistics.fmean(on):.3f}, "
                   f"LSTM {statistics.fmean(lstm):.3f} ({comparison.describe(digits=3)})")
        if unmet:
            section.text.append(f"For the record ({name}): {numbers}.\n")
        else:
            section.conclude(f"**Verdict ({name}): {comparison.verdict}.** {numbers}.\n")
    return section

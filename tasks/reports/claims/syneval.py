"""Claim 4 (the paper's Section 6.3, Table 3): an ON-LSTM LM does at least as well as an LSTM on
long-distance subject-verb agreement (Marvin & Linzen minimal pairs, per row of Table 3)."""

from __future__ import annotations

import statistics

from onlstm.figures import ARCH_NAMES
from tasks.reports.runs import RunRecord
from tasks.reports.sections import Section
from tasks.reports.statistics import by_arch, fmt, per_seed, seeds_note, values_of, welch

CHANCE_BAND = 0.05  # a minimal-pair accuracy within 0.5 +- this is "at chance"


def section(runs: list[RunRecord]) -> Section:
    section = Section("4. Targeted syntactic evaluation: ON-LSTM >= LSTM on long-distance agreement")
    groups = by_arch(r for r in runs if r.finished)
    # A row is named by all four fields: the paper reuses test names across phenomena ("Simple" is both
    # a subject-verb agreement and a reflexive anaphora row).
    def row_key(row: dict) -> tuple[str, str, str, str]:
        return row["dependency"], row["phenomenon"], row["test"], row["comparison"]

    per_run = {id(r): {row_key(row): row for row in r.table("syneval/table3")}
               for members in groups.values() for r in members}
    order: list[tuple[str, str, str, str]] = []
    for members in groups.values():
        for r in members:
            order.extend(key for key in per_run[id(r)] if key not in order)
    rows = []
    for key in order:
        dependency, phenomenon, test, comparison = key
        cells = []
        for arch in ("onlstm", "lstm"):
            values = [float(per_run[id(r)][key]["accuracy"]) for r in groups[arch] if key in per_run[id(r)]]
            cells.append(fmt(values, 3))
        sample = next(per_run[id(r)][key] for m in groups.values() for r in m if key in per_run[id(r)])
        rows.append([dependency, phenomenon, f"{test} ({comparison.replace('_', ' ')})", sample["items"],
                     sample["items_with_oov"], *cells])
    section.table("syneval_rows", ["dependency", "phenomenon", "test", "items", "items with an OOV word",
                                   "ON-LSTM accuracy", "LSTM accuracy"], rows,
                  "Accuracy (grammatical sentence scored higher) per row of the paper's Table 3; items and OOV "
                  "counts of one run (the same vocabulary for all).")
    ppl_rows = [[ARCH_NAMES[a], len(m), fmt(values_of(m, "val/ppl_best")),
                 per_seed(m, lambda r: r.metrics.get("val/ppl_best")),
                 fmt(values_of(m, "test/acc"), 3)] for a, m in groups.items() if m]
    section.table("syneval_language_models", ["model", "seeds", "best validation ppl (WikiText-2)", "per seed",
                                              "mean accuracy over the suite's groups"], ppl_rows)
    missing = seeds_note(groups)
    if missing:
        section.conclude(f"**Not shown yet**: {missing}.\n")
        return section
    long_sva = [key for key in order if key[0] == "long-term" and key[1].startswith("Subject-verb")]

    def long_mean(run: RunRecord) -> float:
        return statistics.fmean(float(per_run[id(run)][key]["accuracy"]) for key in long_sva)

    on, lstm = [long_mean(r) for r in groups["onlstm"]], [long_mean(r) for r in groups["lstm"]]
    comparison = welch(on, lstm)
    numbers = (f"Mean accuracy over the {len(long_sva)} long-term subject-verb agreement rows: ON-LSTM "
               f"{statistics.fmean(on):.3f}, LSTM {statistics.fmean(lstm):.3f} ({comparison.describe(digits=3)})")
    at_chance = all(abs(statistics.fmean(v) - 0.5) <= CHANCE_BAND for v in (on, lstm))
    if at_chance:
        section.conclude(f"**Verdict: not shown at this scale: both models are at chance** (0.5 +- "
                            f"{CHANCE_BAND}). {numbers}.\n")
    else:
        section.conclude(f"**Verdict: {comparison.verdict}.** {numbers}.\n")
    return section

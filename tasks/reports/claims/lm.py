"""Claim 1 (the paper's Section 6.1): an ON-LSTM language model is at least as good as an LSTM one
(test perplexity on PTB, ON-LSTM and LSTM over seeds under the same recipe and CPU budget)."""

from __future__ import annotations

import statistics

from onlstm.figures import ARCH_NAMES
from tasks.reports.runs import RunRecord
from tasks.reports.sections import Section, validation_curves
from tasks.reports.statistics import by_arch, fmt, per_seed, seeds_note, values_of, welch


def parameter_count(run: RunRecord) -> float | None:
    return run.metrics.get("model/parameters")


def section(runs: list[RunRecord]) -> Section:
    section = Section("1. Language modeling (PTB): an ON-LSTM LM is at least as good as an LSTM LM")
    groups = by_arch(r for r in runs if r.finished)
    rows = []
    for arch, members in groups.items():
        if not members:
            continue
        rows.append([
            ARCH_NAMES[arch], len(members),
            fmt(values_of(members, "test/ppl")), per_seed(members, lambda r: r.metrics.get("test/ppl")),
            fmt(values_of(members, "val/ppl_best")),
            fmt([r.last("step") for r in members if r.last("step") is not None], 0),
            fmt([r.last("time/cpu_minutes") for r in members if r.last("time/cpu_minutes") is not None], 1),
            per_seed(members, parameter_count, 0),
        ])
    section.table(
        "lm_perplexity",
        ["model", "seeds", "test ppl", "test ppl per seed", "best validation ppl", "optimizer steps",
         "CPU minutes at the last validation", "parameters per seed"],
        rows,
        "Test perplexity of the best checkpoint (by validation perplexity), batch 1, every test token once.",
    )
    on, lstm = values_of(groups["onlstm"], "test/ppl"), values_of(groups["lstm"], "test/ppl")
    missing = seeds_note({"onlstm": on, "lstm": lstm})
    if missing:
        line = f"**Not shown yet**: {missing}."
    else:
        comparison = welch(lstm, on)  # lower perplexity is better: the claim's side is the LSTM's perplexity
        result = comparison.verdict
        if result == "not shown at this scale" and comparison.advantage >= 0:
            result = "supported (ON-LSTM at least as good: lower or equal mean)"
        elif result == "not shown at this scale":
            result = "not shown at this scale (ON-LSTM worse on average, not significantly)"
        line = (f"**Verdict: {result}.** Mean test perplexity ON-LSTM {statistics.fmean(on):.1f}, LSTM "
                f"{statistics.fmean(lstm):.1f}; LSTM minus ON-LSTM: {comparison.describe()}.")
    section.conclude(line + "\n")

    figure, axes = validation_curves([r for r in runs if r.finished], "val/ppl", "Validation perplexity against training time",
                                     "validation perplexity")
    axes.set_yscale("log")
    section.figure("lm_validation_curves", figure,
                   "Validation perplexity at every validation against the CPU minutes used by then (one "
                   "thread: the budget's clock, the wall time of a job with a core to itself), each seed a line.")
    return section

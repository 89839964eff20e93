"""Claim 2 (the paper's Section 6.2): trees read off the master forget gate beat right-branching
(sentence F1 on the test half of the treebank sample, the layer chosen on the development half),
with the same LM's initial weights as the untrained control."""

from __future__ import annotations

import statistics

from tasks.reports.runs import RunRecord
from tasks.reports.sections import Section
from tasks.reports.statistics import MIN_SEEDS, against_constant, fmt, per_seed, values_of, welch


def section(runs: list[RunRecord]) -> Section:
    section = Section("2. Unsupervised parsing: trees from the master forget gate beat right-branching")
    finished = [r for r in runs if r.finished]
    trained = [r for r in finished if r.config.get("lm_weights", "best") == "best"]
    untrained = [r for r in finished if r.config.get("lm_weights") == "initial"]
    keys = {"all lengths": "test/", "<= 10 words": "test/wsj10/"}
    rows = []
    for name, members, layer in (("ON-LSTM, trained (layer chosen on dev)", trained, None),
                                 ("ON-LSTM, its initial weights (layer chosen on dev)", untrained, None)):
        if members:
            rows.append([name, len(members)]
                        + [fmt(values_of(members, f"{p}f1_sentence"), 1, 100) for p in keys.values()]
                        + [per_seed(members, lambda r: r.metrics.get("test/f1_sentence"), 1, 100),
                           per_seed(members, lambda r: r.metrics.get("test/chosen_layer"), 0)])
    for baseline in ("right_branching", "left_branching", "balanced", "random"):
        if trained:
            rows.append([baseline.replace("_", "-"), len(trained)]
                        + [fmt(values_of(trained, f"{p}f1_sentence_{baseline}"), 1, 100) for p in keys.values()]
                        + ["", ""])
    section.table(
        "parsing_f1",
        ["parser", "seeds", "test sentence F1 %, all lengths", "test sentence F1 %, <= 10 words",
         "all lengths per seed", "chosen layer per seed"],
        rows,
        "Sentence-level F1 (Kim et al. 2019 convention) on the test half of the treebank sample "
        "(section 01, wsj_0100-0199); the layer is chosen on the development half (section 00). "
        "Baselines: computed on the same sentences (random: one tree per sentence, seeded by the run's seed).",
    )
    layer_rows = []
    for members, label in ((trained, "trained"), (untrained, "initial weights")):
        # the layers the runs scored (the checkpoint's, which an evaluation config does not restate)
        layers = sorted({int(key[len("test/f1_sentence_layer"):]) for r in members for key in r.metrics
                         if key.startswith("test/f1_sentence_layer")})
        for k in layers:
            layer_rows.append([label, k, fmt(values_of(members, f"dev/f1_sentence_layer{k}"), 1, 100),
                               fmt(values_of(members, f"test/f1_sentence_layer{k}"), 1, 100),
                               fmt(values_of(members, f"test/wsj10/f1_sentence_layer{k}"), 1, 100)])
    section.table("parsing_layers", ["weights", "layer", "dev F1 %", "test F1 %", "test F1 % (<= 10 words)"],
                  layer_rows, "Every layer, for transparency (the choice uses the dev column only).")

    if len(trained) < MIN_SEEDS:
        section.conclude(f"**Not shown yet**: {len(trained)} finished trained-LM parsing runs, {MIN_SEEDS} needed.\n")
        return section
    for name, prefix in keys.items():
        scores = values_of(trained, f"{prefix}f1_sentence")
        rb = values_of(trained, f"{prefix}f1_sentence_right_branching")
        comparison = against_constant(scores, statistics.fmean(rb))  # right-branching has no variance
        line = (f"**Verdict ({name}): {comparison.verdict}.** Trained ON-LSTM "
                f"{100 * statistics.fmean(scores):.1f} against right-branching {100 * statistics.fmean(rb):.1f} "
                f"({comparison.describe(scale=100)})")
        initial = values_of(untrained, f"{prefix}f1_sentence")
        if len(initial) >= 2:
            gain = welch(scores, initial)
            line += (f"; untrained {100 * statistics.fmean(initial):.1f}, so training adds {100 * gain.advantage:+.1f} "
                     f"(standard error {100 * gain.se:.1f}, p = {gain.p:.3f})")
        section.conclude(line + ".\n")
    return section

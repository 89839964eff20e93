"""The evidence report: the paper's four claims tested from run folders, and nothing else.

    python -m tasks.report logs/evidence/lm logs/evidence/parsing logs/evidence/logic \\
        logs/evidence/syneval --out docs/evidence

writes ``docs/evidence.md`` (a summary of the verdicts, then per claim: a table of mean +- sd over
seeds with the per-seed values, and a verdict line with the numbers that decide it), ``docs/evidence/*.csv`` (one per
table) and ``docs/evidence/*.png`` (figures). Each argument is a multirun folder (its job folders
are read) or a single run folder. Only finished runs (``done.json``, :mod:`tasks.resume`) enter
the tables; unfinished ones are listed with how far they got.

Verdicts compare means over seeds with a t-test at the 5% level, two-sided (Welch's between the
two models; one-sample against a baseline that does not vary over seeds): "supported" /
"contradicted" when it rejects equal means and the difference favours / goes against the claim,
"not shown at this scale" otherwise, or when a claim's precondition (fewer than ``MIN_SEEDS``
finished seeds per model, a logic model that has not learned its training distribution) is not met.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from scipy import stats

from tasks.reporting import markdown_table
from tasks.resume import DONE_FILE

MIN_SEEDS = 3
ALPHA = 0.05  # two-sided significance level of every verdict
LOGIC_PRECONDITION = 0.95  # validation accuracy on <= 6 operators both models must reach
BOWMAN_MAX_OPERATORS = 12  # Bowman et al.'s test files stop here; longer formulas come from our generator
CHANCE_BAND = 0.05  # a minimal-pair accuracy within 0.5 +- this is "at chance"
ARCH_NAMES = {"onlstm": "ON-LSTM", "lstm": "LSTM"}


# ------------------------------------------------------------------------------ run folders
@dataclass
class Run:
    folder: Path
    config: dict
    record: dict | None
    history: list[dict[str, float]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    entry: str | None = None  # the script that ran it (Hydra's job name: "train" or "eval")

    @property
    def finished(self) -> bool:
        return self.record is not None

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.record["metrics"]) if self.record else {}

    @property
    def arch(self) -> str:
        return self.config["model"]["arch"]

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def kind(self) -> str:
        task = self.config["task"]["name"]
        if task == "lm" and "syneval" in (self.config.get("evaluate_after") or {}):
            return "syneval"
        return task

    @property
    def sweep_command(self) -> str | None:
        """The command that runs this run's sweep again (continuing it where it stopped)."""
        experiment = next((o for o in self.overrides if o.startswith("experiment=")), None)
        if experiment is None or self.entry is None:
            return None
        return f"python {self.entry}.py -m {experiment}"

    def last(self, key: str) -> float | None:
        values = [row[key] for row in self.history if key in row]
        return values[-1] if values else None

    def curve(self, x: str, y: str) -> list[tuple[float, float]]:
        """(x, y) of the rows that log both, one per step (a resumed run may repeat a step)."""
        by_step = {row.get("step"): (row[x], row[y]) for row in self.history if x in row and y in row}
        return [by_step[s] for s in sorted(by_step, key=lambda s: -1 if s is None else s)]

    def table(self, name: str) -> list[dict[str, str]]:
        path = self.folder / "tables" / f"{name}.csv"
        if not path.is_file():
            return []
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))


def read_history(folder: Path) -> list[dict[str, float]]:
    path = folder / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def read_run(folder: Path) -> Run:
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    done = folder / DONE_FILE
    record = json.loads(done.read_text()) if done.is_file() else None
    overrides_file = folder / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    hydra_file = folder / ".hydra" / "hydra.yaml"
    hydra = yaml.safe_load(hydra_file.read_text()) if hydra_file.is_file() else None
    entry = ((hydra or {}).get("hydra") or {}).get("job", {}).get("name")
    return Run(folder, config, record, read_history(folder), list(overrides or []), entry)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run folder given, or inside a given multirun folder."""
    runs = []
    for path in map(Path, paths):
        if (path / ".hydra" / "config.yaml").is_file():
            runs.append(read_run(path))
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such run or multirun folder")
        found = sorted(p for p in path.iterdir() if (p / ".hydra" / "config.yaml").is_file())
        if not found:
            raise FileNotFoundError(f"{path}: holds no run folder (none has .hydra/config.yaml)")
        runs += [read_run(p) for p in found]
    return runs


# ------------------------------------------------------------------------------ statistics
def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values) if values else math.nan
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return mean, sd


def fmt(values: Sequence[float], digits: int = 1, scale: float = 1.0) -> str:
    """``mean +- sd (n)``."""
    if not values:
        return "-"
    mean, sd = mean_sd([v * scale for v in values])
    sd_text = "" if math.isnan(sd) else f" ± {sd:.{digits}f}"
    return f"{mean:.{digits}f}{sd_text} (n={len(values)})"


def per_seed(runs: Sequence[Run], value: Callable[[Run], float | None], digits: int = 1, scale: float = 1.0) -> str:
    parts = []
    for run in sorted(runs, key=lambda r: r.seed):
        v = value(run)
        parts.append(f"{run.seed}: " + ("-" if v is None else f"{v * scale:.{digits}f}"))
    return ", ".join(parts)


@dataclass(frozen=True)
class Comparison:
    """Mean of the claim's side minus the other's, and the t-test that decides the verdict."""
    advantage: float  # > 0 favours the claim
    se: float  # standard error of the difference
    t: float
    df: float
    p: float  # two-sided

    @property
    def verdict(self) -> str:
        if math.isnan(self.p):
            return "not shown at this scale"
        if self.p < ALPHA:
            return "supported" if self.advantage > 0 else "contradicted"
        return "not shown at this scale"

    def describe(self, scale: float = 1.0, digits: int = 1) -> str:
        numbers = f"difference {scale * self.advantage:+.{digits}f}, standard error {scale * self.se:.{digits}f}"
        if math.isnan(self.p):
            return numbers + ": no test (a group of one seed, or no spread over seeds)"
        return numbers + f", t = {self.t:.2f}, df {self.df:.1f}, two-sided p = {self.p:.3f}"


def _untested(advantage: float, se: float = math.nan) -> Comparison:
    return Comparison(advantage, se, math.nan, math.nan, math.nan)


def _tested(advantage: float, se: float, result: Any) -> Comparison:
    return Comparison(advantage, se, float(result.statistic), float(result.df), float(result.pvalue))


def welch(favoured: Sequence[float], other: Sequence[float]) -> Comparison:
    """Welch's t-test of mean(favoured) - mean(other): at three seeds per model two standard errors
    are not a 5% test (the t quantile at ~4 degrees of freedom is 2.8), so the verdict uses the t
    distribution. A group of one seed, or no spread at all, decides nothing (p is nan)."""
    advantage = statistics.fmean(favoured) - statistics.fmean(other) if favoured and other else math.nan
    if len(favoured) < 2 or len(other) < 2:
        return _untested(advantage)
    se = math.sqrt(statistics.variance(favoured) / len(favoured) + statistics.variance(other) / len(other))
    if se == 0:
        return _untested(advantage, se)
    return _tested(advantage, se, stats.ttest_ind(favoured, other, equal_var=False))


def against_constant(values: Sequence[float], reference: float) -> Comparison:
    """One-sample t-test of mean(values) - reference (a baseline with no variance over seeds)."""
    advantage = statistics.fmean(values) - reference if values else math.nan
    if len(values) < 2:
        return _untested(advantage)
    se = statistics.stdev(values) / math.sqrt(len(values))
    if se == 0:
        return _untested(advantage, se)
    return _tested(advantage, se, stats.ttest_1samp(values, reference))


def values_of(runs: Iterable[Run], key: str) -> list[float]:
    return [run.metrics[key] for run in runs if key in run.metrics]


def by_arch(runs: Iterable[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {"onlstm": [], "lstm": []}
    for run in runs:
        groups.setdefault(run.arch, []).append(run)
    return groups


def seeds_note(groups: dict[str, Sequence]) -> str | None:
    short = [f"{ARCH_NAMES.get(a, a)} {len(r)}" for a, r in groups.items() if len(r) < MIN_SEEDS]
    if short:
        return f"fewer than {MIN_SEEDS} finished seeds ({', '.join(short)})"
    return None


# ------------------------------------------------------------------------------ output
@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    conclusions: list[str] = field(default_factory=list)  # the verdict lines, repeated in the summary

    def conclude(self, line: str) -> None:
        """A verdict (or "not shown yet") paragraph: written in place and listed in the summary."""
        self.conclusions.append(line.strip())
        self.text.append(line.rstrip() + "\n")

    def table(self, name: str, columns: list[str], rows: list[list[Any]], caption: str = "") -> None:
        self.tables[name] = (columns, rows)
        if caption:
            self.text.append(caption)
        self.text.append(markdown_table(columns, rows) + f"\n(`{name}.csv`)\n")

    def figure(self, name: str, figure: Figure, caption: str) -> None:
        self.figures[name] = figure
        self.text.append(f"![{caption}]({{assets}}/{name}.png)\n\n{caption}\n")


def line_figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.subplots()
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    return figure, axes


COLORS = {"onlstm": "tab:blue", "lstm": "tab:orange"}


def validation_curves(runs: Sequence[Run], metric: str, title: str, ylabel: str) -> tuple[Figure, Any]:
    """``metric`` at every validation against the CPU minutes used by then, each run a line."""
    figure, axes = line_figure(title, "CPU minutes (one thread)", ylabel)
    for run in sorted(runs, key=lambda r: (r.arch, r.seed)):
        points = run.curve("time/cpu_minutes", metric)
        if points:
            xs, ys = zip(*points)
            axes.plot(xs, ys, color=COLORS.get(run.arch), alpha=0.8, label=f"{ARCH_NAMES[run.arch]} seed {run.seed}")
    axes.legend(fontsize=7)
    return figure, axes


# ------------------------------------------------------------------------------ claim 1: LM
def parameter_count(run: Run) -> float | None:
    return run.metrics.get("model/parameters")


def lm_section(runs: list[Run]) -> Section:
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


# ------------------------------------------------------------------------------ claim 2: parsing
def parsing_section(runs: list[Run]) -> Section:
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


# ------------------------------------------------------------------------------ claim 3: logic
def logic_section(runs: list[Run]) -> Section:
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

    figure, axes = line_figure("Accuracy by number of operators", "operators", "test accuracy")
    for arch in ("onlstm", "lstm"):
        points = [(n, mean_sd(values_of(groups[arch], f"test/acc_ops{n}"))) for n in ops]
        points = [(n, m, s) for n, (m, s) in points if not math.isnan(m)]
        if points:
            xs, means, sds = zip(*points)
            sds = [0.0 if math.isnan(s) else s for s in sds]
            axes.plot(xs, means, marker="o", color=COLORS[arch], label=ARCH_NAMES[arch])
            axes.fill_between(xs, [m - s for m, s in zip(means, sds)], [m + s for m, s in zip(means, sds)],
                              color=COLORS[arch], alpha=0.2)
    axes.axvspan(6.5, max(ops, default=7) + 0.5, color="grey", alpha=0.1, label="longer than training")
    if any(n > BOWMAN_MAX_OPERATORS for n in ops):
        axes.axvline(BOWMAN_MAX_OPERATORS + 0.5, color="grey", linestyle=":", linewidth=1,
                     label="right of it: generated formulas")
    axes.legend(fontsize=8)
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


# ------------------------------------------------------------------------------ claim 4: syneval
def syneval_section(runs: list[Run]) -> Section:
    section = Section("4. Targeted syntactic evaluation: ON-LSTM >= LSTM on long-distance agreement")
    groups = by_arch(r for r in runs if r.finished)
    # A row is named by all four fields: the paper reuses test names across phenomena ("Simple" is both
    # a subject-verb agreement and a reflexive anaphora row).
    def row_key(row: dict) -> tuple[str, str, str, str]:
        return row["dependency"], row["phenomenon"], row["test"], row["comparison"]

    per_run = {id(r): {row_key(row): row for row in r.table("syneval_table3")}
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

    def long_mean(run: Run) -> float:
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


# ------------------------------------------------------------------------------ the report
SECTIONS = {"lm": lm_section, "parsing": parsing_section, "logic": logic_section, "syneval": syneval_section}


def provenance(runs: list[Run]) -> list[str]:
    lines = []
    finished = [r for r in runs if r.finished]
    dates = sorted(r.record["finished"][:10] for r in finished)
    if dates:
        lines.append(f"Runs finished between {dates[0]} and {dates[-1]}.")
    sweeps: dict[str, list[str]] = {}
    for run in runs:
        if run.sweep_command and str(run.folder.parent) not in sweeps.setdefault(run.sweep_command, []):
            sweeps[run.sweep_command].append(str(run.folder.parent))
    if sweeps:
        lines.append("Sweeps (each command continues its sweep where it stopped; `make evidence` runs them all): "
                     + "; ".join(f"`{c}` ({', '.join(f)})" for c, f in sweeps.items()) + ".")
    commits: dict[str, set[str]] = {}  # per sweep folder: a reader places each claim's runs on its own
    for run in finished:
        commits.setdefault(str(run.folder.parent), set()).add(run.record.get("commit", "unknown"))
    machines = sorted({f"{r.record['machine']['device']} (torch {r.record['machine']['torch']}, "
                       f"{r.record['machine']['threads']} thread(s))" for r in finished if "machine" in r.record})
    if commits:
        lines.append("Code (commit of the code that ran, per sweep): " + "; ".join(
            f"{folder}: {', '.join(sorted(c))}" for folder, c in commits.items()) + ".")
    if machines:
        lines.append(f"Machine(s): {'; '.join(machines)}.")
    unfinished = [r for r in runs if not r.finished]
    if unfinished:
        lines.append("Unfinished runs (left out of every table): " + "; ".join(
            f"{r.folder.parent.name}/{r.folder.name} (CPU minutes at last validation: "
            f"{r.last('time/cpu_minutes') or 0:.1f})" for r in unfinished) + ".")
    return lines


def tuned_value(run: Run) -> tuple[str, float | None]:
    """The metric a tuning run is judged by (its best over validations when logged) and its value."""
    metric = run.config["task"].get("optimized_metric", "")
    if f"{metric}_best" in run.metrics:
        return f"{metric}_best", run.metrics[f"{metric}_best"]
    return metric, run.metrics.get(metric)


def changed_settings(run: Run) -> list[str]:
    return [o for o in run.overrides if not o.startswith(("experiment=", "test=", "hydra"))]


def same_setting(a: Any, b: Any) -> bool:
    """``1e-3`` on the command line and ``0.001`` in a config are one setting."""
    try:
        return math.isclose(float(a), float(b))
    except (TypeError, ValueError):
        return str(a) == str(b)


def recipe_check(task: str, tuning: Sequence[Run], recipe_runs: Sequence[Run]) -> str | None:
    """Which tuning run won on validation, and whether the claim's runs use its settings: the table
    alone would not show a recipe that kept a setting the tuning had since overturned."""
    finished = [r for r in tuning if r.finished and tuned_value(r)[1] is not None]
    if len(finished) < 2:
        return None
    settings = {r.folder: dict(o.split("=", 1) for o in changed_settings(r) if "=" in o) for r in finished}
    swept = sorted({k for s in settings.values() for k in s
                    if len({str(other.get(k)) for other in settings.values()}) > 1})
    maximise = finished[0].config["task"].get("monitor_mode", "max") == "max"
    best = (max if maximise else min)(finished, key=lambda r: tuned_value(r)[1])
    metric, value = tuned_value(best)
    chosen = " ".join(f"{k}={settings[best.folder][k]}" for k in swept)
    line = f"Best {task} setting by {metric} ({'highest' if maximise else 'lowest'}): {chosen} ({value:.4f})."
    if not recipe_runs:
        return line
    used = {k: sorted({str(OmegaConf.select(OmegaConf.create(r.config), k)) for r in recipe_runs}) for k in swept}
    if all(all(same_setting(v, settings[best.folder][k]) for v in used[k]) for k in swept):
        return line + f" The {task} runs above use it."
    return line + (f" The {task} runs above use " + " ".join(f"{k}={'/'.join(v)}" for k, v in used.items())
                   + ", not the best setting: their recipe predates this tuning.")


def tuning_section(runs: list[Run], recipe_runs: Sequence[Run] = ()) -> Section:
    section = Section("Recipe selection (validation data only)")
    rows = []
    for run in sorted(runs, key=lambda r: str(r.folder)):
        metric, best = tuned_value(run)
        rows.append([run.kind, " ".join(changed_settings(run)) or "(the experiment as written)",
                     metric, "-" if best is None else f"{best:.4f}", f"{run.last('time/cpu_minutes') or 0:.1f}",
                     "yes" if run.finished else "no", (run.record or {}).get("commit", "-")])
    section.table("tuning", ["task", "overrides", "metric", "value", "CPU minutes", "finished", "commit"], rows,
                  "Runs that chose the recipes' free settings; each was scored on validation data only.")
    for kind in sorted({r.kind for r in runs}):  # kind, not task name: a syneval LM is tuned as task=lm
        line = recipe_check(kind, [r for r in runs if r.kind == kind], [r for r in recipe_runs if r.kind == kind])
        if line:
            section.text.append(line + "\n")
    return section


def write_report(paths: Sequence[str | Path], out: str | Path, command: str,
                 tuning: Sequence[str | Path] = ()) -> Path:
    absent = [str(p) for p in [*paths, *tuning] if not Path(p).exists()]
    runs = load_runs([p for p in paths if Path(p).exists()])
    tuning_runs = load_runs([p for p in tuning if Path(p).exists()])
    out = Path(out)
    assets = out
    assets.mkdir(parents=True, exist_ok=True)
    markdown = out.with_suffix(".md")
    lines = ["# Evidence: the paper's claims at laptop scale", "",
             f"Made by `{command}` from the run folders alone; every number below is in a CSV beside the "
             f"figures (`{assets.as_posix()}/`).", ""]
    lines += provenance(runs)
    if absent:
        lines.append(f"Not found (sweeps not run yet?): {', '.join(absent)}.")
    lines.append("")
    sections = []
    for kind, build in SECTIONS.items():
        members = [r for r in runs if r.kind == kind]
        if not members:
            continue
        section = build(members)
        if not any(r.finished for r in members):  # empty tables and figures say less than this line
            section = Section(section.title)
            section.conclude("**Not shown yet**: no finished run (the unfinished ones are listed above).\n")
        sections.append(section)
    if tuning_runs:
        sections.append(tuning_section(tuning_runs, runs))
    concluded = [s for s in sections if s.conclusions]
    if concluded:
        lines += ["## Summary", ""]
        lines += [f"- {s.title}: " + " ".join(c.replace("**", "") for c in s.conclusions) for s in concluded]
        lines.append("")
    for section in sections:
        lines += [f"## {section.title}", ""]
        lines += [t.replace("{assets}", assets.name) for t in section.text]
        for name, (columns, rows) in section.tables.items():
            with open(assets / f"{name}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                writer.writerows(rows)
        for name, figure in section.figures.items():
            figure.savefig(assets / f"{name}.png", dpi=90, bbox_inches="tight")
    markdown.write_text("\n".join(lines) + "\n")
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="multirun folders (or run folders) of the evidence sweeps")
    parser.add_argument("--tuning", nargs="*", default=[], help="folders of the runs that chose the recipes")
    parser.add_argument("--out", default="docs/evidence", help="writes OUT.md and OUT/ (CSVs, figures)")
    args = parser.parse_args(argv)
    command = "python -m tasks.report " + " ".join(args.folders)
    if args.tuning:
        command += " --tuning " + " ".join(args.tuning)
    command += f" --out {args.out}"
    print(f"wrote {write_report(args.folders, args.out, command, args.tuning)}")


if __name__ == "__main__":
    main()

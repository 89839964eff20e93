"""The report's statistics: mean +- sd over seeds, and the t-tests behind every verdict.

Verdicts compare means over seeds with a t-test at the 5% level, two-sided (Welch's between the
two models; one-sample against a baseline that does not vary over seeds): "supported" /
"contradicted" when it rejects equal means and the difference favours / goes against the claim,
"not shown at this scale" otherwise. A pre-registered question names its test's direction instead
(``alternative="greater"``: the claim's side has the larger mean), and its verdict is "confirmed"
or "not confirmed" (:attr:`Comparison.confirmation`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from onlstm.figures import ARCH_NAMES
from tasks.reports.runs import RunRecord

MIN_SEEDS = 3
ALPHA = 0.05  # two-sided significance level of every verdict


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


def per_seed(runs: Sequence[RunRecord], value: Callable[[RunRecord], float | None], digits: int = 1, scale: float = 1.0) -> str:
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
    p: float
    alternative: str = "two-sided"  # or "greater": one-sided, the claim's side larger

    @property
    def verdict(self) -> str:
        if math.isnan(self.p):
            return "not shown at this scale"
        if self.p < ALPHA:
            return "supported" if self.advantage > 0 else "contradicted"
        return "not shown at this scale"

    @property
    def confirmation(self) -> str:
        """The verdict of a pre-registered one-sided test: "confirmed" when it rejects at ``ALPHA``."""
        if self.alternative != "greater":
            raise ValueError("a confirmation is the verdict of a one-sided test (alternative='greater')")
        return "confirmed" if self.p < ALPHA else "not confirmed"

    def describe(self, scale: float = 1.0, digits: int = 1) -> str:
        numbers = f"difference {scale * self.advantage:+.{digits}f}, standard error {scale * self.se:.{digits}f}"
        if math.isnan(self.p):
            return numbers + ": no test (a group of one seed, or no spread over seeds)"
        sides = "two-sided" if self.alternative == "two-sided" else "one-sided"
        # below 0.0005, three decimals would print "p = 0.000", which reads as impossible
        shown = f"p = {self.p:.3f}" if self.p >= 0.0005 else "p < 0.001"
        return numbers + f", t = {self.t:.2f}, df {self.df:.1f}, {sides} {shown}"


def _untested(advantage: float, se: float = math.nan, alternative: str = "two-sided") -> Comparison:
    return Comparison(advantage, se, math.nan, math.nan, math.nan, alternative)


def _tested(advantage: float, se: float, result: Any, alternative: str) -> Comparison:
    return Comparison(advantage, se, float(result.statistic), float(result.df), float(result.pvalue), alternative)


def welch(favoured: Sequence[float], other: Sequence[float], alternative: str = "two-sided") -> Comparison:
    """Welch's t-test of mean(favoured) - mean(other): at three seeds per model two standard errors
    are not a 5% test (the t quantile at ~4 degrees of freedom is 2.8), so the verdict uses the t
    distribution. A group of one seed, or no spread at all, decides nothing (p is nan).
    ``alternative="greater"``: one-sided, favoured's mean larger."""
    advantage = statistics.fmean(favoured) - statistics.fmean(other) if favoured and other else math.nan
    if len(favoured) < 2 or len(other) < 2:
        return _untested(advantage, alternative=alternative)
    se = math.sqrt(statistics.variance(favoured) / len(favoured) + statistics.variance(other) / len(other))
    if se == 0:
        return _untested(advantage, se, alternative)
    return _tested(advantage, se, stats.ttest_ind(favoured, other, equal_var=False, alternative=alternative),
                   alternative)


def against_constant(values: Sequence[float], reference: float, alternative: str = "two-sided") -> Comparison:
    """One-sample t-test of mean(values) - reference (a baseline with no variance over seeds).
    ``alternative="greater"``: one-sided, the values' mean larger."""
    advantage = statistics.fmean(values) - reference if values else math.nan
    if len(values) < 2:
        return _untested(advantage, alternative=alternative)
    se = statistics.stdev(values) / math.sqrt(len(values))
    if se == 0:
        return _untested(advantage, se, alternative)
    return _tested(advantage, se, stats.ttest_1samp(values, reference, alternative=alternative), alternative)


def values_of(runs: Iterable[RunRecord], key: str) -> list[float]:
    return [run.metrics[key] for run in runs if key in run.metrics]


def by_arch(runs: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {"onlstm": [], "lstm": []}
    for run in runs:
        groups.setdefault(run.arch, []).append(run)
    return groups


def seeds_note(groups: dict[str, Sequence]) -> str | None:
    short = [f"{ARCH_NAMES.get(a, a)} {len(r)}" for a, r in groups.items() if len(r) < MIN_SEEDS]
    if short:
        return f"fewer than {MIN_SEEDS} finished seeds ({', '.join(short)})"
    return None

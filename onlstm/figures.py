"""Figures drawn from numbers (matplotlib ``Figure`` objects, no pyplot state, no display), shared
by a task that logs them during a run and the offline tools that draw them from run folders.

:func:`accuracy_figure` draws accuracy against what makes an example harder; its
:func:`accuracy_by_operators` is the logical-inference figure (the paper's Figure 2): the logic
task draws its run with it, the evidence report the mean and spread over seeds, and
``python -m tasks.reports.logic_figure`` several runs together; the ListOps task draws accuracy by
length and by depth, a line per test set. :func:`gate_figure` draws a
sentence's master-gate distances (the parsing task, ``onlstm-parse --figure``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

ARCH_NAMES = {"onlstm": "ON-LSTM", "lstm": "LSTM"}  # how figures and tables name model.arch
ARCH_COLORS = {"onlstm": "tab:blue", "lstm": "tab:orange"}
BOWMAN_MAX_OPERATORS = 12  # Bowman et al.'s test files stop here; longer formulas come from our generator


def line_figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Any]:
    """An empty figure with one set of axes, titled and labelled: (figure, axes)."""
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.subplots()
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    return figure, axes


@dataclass
class Curve:
    """One line of a figure: (x, y) points, optionally a band of +- ``spread`` around them."""

    label: str
    points: Sequence[tuple[float, float]]
    spread: Sequence[float] | None = None  # one per point; None: no band
    color: str | None = None  # None: matplotlib's next colour


def accuracy_figure(curves: Sequence[Curve], title: str, xlabel: str, majority: Sequence[Curve] = (),
                    beyond_training: tuple[float, float] | None = None, marks: Sequence[tuple[float, str]] = (),
                    ticks: Sequence[tuple[float, str]] = ()) -> Figure:
    """Accuracy against whatever makes an example harder (operators, length, depth), one line per
    model, run or test set, each with its band when it has a ``spread``. ``majority``: rates of
    the most frequent label, drawn as dotted references (black for a single one, else in their
    curve's colour); ``beyond_training``: the x range longer than training, shaded; ``marks``:
    dotted vertical lines at x with their legend label; ``ticks``: x positions with their labels
    (e.g. length buckets), else matplotlib's."""
    figure, axes = line_figure(title, xlabel, "test accuracy")
    for curve in curves:
        xs, ys = zip(*curve.points)
        axes.plot(xs, ys, marker="o", color=curve.color, label=curve.label)
        if curve.spread is not None:
            axes.fill_between(xs, [y - s for y, s in zip(ys, curve.spread)], [y + s for y, s in zip(ys, curve.spread)],
                              color=curve.color, alpha=0.2)
    for reference in majority:
        xs, ys = zip(*reference.points)
        style = {"color": "k"} if len(majority) == 1 else {"color": reference.color}
        axes.plot(xs, ys, linestyle=":", linewidth=1, label=reference.label, **style)
    if beyond_training is not None:
        axes.axvspan(*beyond_training, color="grey", alpha=0.1, label="longer than training")
    for x, label in marks:
        axes.axvline(x, color="grey", linestyle=":", linewidth=1, label=label)
    if ticks:
        axes.set_xticks([x for x, _ in ticks])
        axes.set_xticklabels([label for _, label in ticks], fontsize=8)
    axes.legend(fontsize=8)
    return figure


def accuracy_by_operators(curves: Sequence[Curve], operators: Sequence[int], train_max_ops: int | None = 6,
                          majority: Curve | None = None) -> Figure:
    """Test accuracy against the number of operators in a formula, one line per model (or run),
    with the lengths longer than training shaded and, when the axis goes past Bowman's test files,
    a dotted line where the generated formulas start. ``operators``: every length on the axis;
    ``majority``: the rate of the most frequent label, drawn as a black dotted reference."""
    beyond = None
    if train_max_ops is not None:
        beyond = (train_max_ops + 0.5, max(operators, default=train_max_ops + 1) + 0.5)
    marks = []
    if any(n > BOWMAN_MAX_OPERATORS for n in operators):
        marks.append((BOWMAN_MAX_OPERATORS + 0.5, "right of it: generated formulas"))
    return accuracy_figure(curves, "Accuracy by number of operators", "operators", [majority] if majority else [],
                           beyond, marks)


def gate_figure(
    words: Sequence[str], distances: Sequence[Sequence[float]], distances_in: Sequence[Sequence[float]], title: str
) -> Figure:
    """Bars of the master forget-gate (1 - mean f~) and input-gate (mean i~) distances per layer,
    like the official code's figures. A bare Figure: no pyplot state, drawn with Agg."""
    layers, n = len(distances), len(words)
    figure = Figure(figsize=(max(4.0, 0.5 * n + 1.0), 1.6 * layers + 0.8))
    axes = figure.subplots(layers, 1, sharex=True, squeeze=False)[:, 0]
    positions = list(range(n))
    for k, ax in enumerate(axes):
        ax.bar([p - 0.2 for p in positions], distances[k], width=0.4, label="forget distance")
        ax.bar([p + 0.2 for p in positions], distances_in[k], width=0.4, label="input distance")
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel(f"layer {k + 1}")
    axes[0].set_title(title, fontsize=9)
    axes[0].legend(loc="upper right", fontsize=7)
    axes[-1].set_xticks(positions)
    axes[-1].set_xticklabels(words, rotation=45, ha="right", fontsize=8)
    axes[-1].set_xlim(-0.5, n - 0.5)
    figure.tight_layout()
    return figure

"""What a section of the evidence report is made of (:class:`Section`), and its figure of a
metric against training time (:func:`validation_curves`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from onlstm.figures import ARCH_COLORS, ARCH_NAMES, line_figure
from tasks.jobs.run_folder import markdown_table
from tasks.reports.runs import RunRecord


@dataclass
class Section:
    """One part of the report: its title, its text (tables and figures in place), the tables and
    figures as files, and its verdict lines (repeated in the summary at the top)."""

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


def validation_curves(runs: Sequence[RunRecord], metric: str, title: str, ylabel: str) -> tuple[Figure, Any]:
    """``metric`` at every validation against the CPU minutes used by then, each run a line."""
    figure, axes = line_figure(title, "CPU minutes (one thread)", ylabel)
    for run in sorted(runs, key=lambda r: (r.arch, r.seed)):
        points = run.curve("time/cpu_minutes", metric)
        if points:
            xs, ys = zip(*points)
            axes.plot(xs, ys, color=ARCH_COLORS.get(run.arch), alpha=0.8, label=f"{ARCH_NAMES[run.arch]} seed {run.seed}")
    axes.legend(fontsize=7)
    return figure, axes

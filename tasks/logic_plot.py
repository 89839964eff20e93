"""Accuracy against number of operators (the paper's Figure 2), for one run or several on one plot.

The logical-inference task draws its own run with :func:`plot_accuracy_by_ops`; to put ON-LSTM
and LSTM runs together, point this script at their run folders (each holds
``tables/test_acc_by_ops.csv``, written by the task through ``tasks.reporting.log_table``)::

    python -m tasks.logic_plot logs/logic/runs/RUN_A logs/logic/runs/RUN_B -o docs/figures/logic_accuracy.png

A run's legend label is its ``model.arch`` read from ``RUN/.hydra/config.yaml`` (else the folder
name); ``--labels`` overrides them.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the training machines
import matplotlib.pyplot as plt

TABLE = Path("tables") / "test_acc_by_ops.csv"
MARKERS = ("o", "s", "^", "D", "v", "x")


def read_accuracy_table(run_dir: str | Path) -> list[dict[str, float]]:
    """Rows of a run's per-operator table: ops, examples, accuracy, majority."""
    path = Path(run_dir) / TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the folder of a finished `task=logic` run")
    with open(path, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def run_label(run_dir: str | Path) -> str:
    config = Path(run_dir) / ".hydra" / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        arch = OmegaConf.select(OmegaConf.load(config), "model.arch")
        if arch:
            return {"onlstm": "ON-LSTM", "lstm": "LSTM"}.get(arch, str(arch))
    return Path(run_dir).name


def plot_accuracy_by_ops(series: Sequence[tuple[str, list[dict[str, float]]]], train_max_ops: int | None = None):
    """One line per run ((label, table rows) pairs); the majority-class rate of the first as a reference."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (label, rows), marker in zip(series, MARKERS * len(series)):
        rows = sorted(rows, key=lambda r: r["ops"])
        ax.plot([r["ops"] for r in rows], [100 * r["accuracy"] for r in rows], marker=marker, label=label)
    first = series[0][1] if series else []
    if first and "majority" in first[0]:
        rows = sorted(first, key=lambda r: r["ops"])
        ax.plot(
            [r["ops"] for r in rows], [100 * r["majority"] for r in rows], "k:", linewidth=1, label="majority class"
        )
    if train_max_ops is not None:
        ax.axvspan(train_max_ops + 0.5, ax.get_xlim()[1], color="0.9", zorder=0, label="unseen during training")
    ax.set_xlabel("number of operators")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m tasks.logic_plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders of task=logic")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    parser.add_argument("--labels", nargs="+", help="legend labels, one per run")
    parser.add_argument("--train-max-ops", type=int, default=6, help="shade the lengths beyond this")
    args = parser.parse_args(argv)
    labels = args.labels or [run_label(run) for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(args.runs)} runs but {len(labels)} labels")
    series = [(label, read_accuracy_table(run)) for label, run in zip(labels, args.runs)]
    fig = plot_accuracy_by_ops(series, args.train_max_ops)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()

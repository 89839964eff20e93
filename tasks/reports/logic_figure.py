"""Accuracy against number of operators (the paper's Figure 2) of several ``task=logic`` runs on one
plot, drawn from their run folders (each holds the table ``tables/test_acc_by_ops.csv``)::

    python -m tasks.reports.logic_figure logs/logic/runs/RUN_A logs/logic/runs/RUN_B -o docs/figures/logic_accuracy.png

A run's legend label is its ``model.arch`` (from its saved config; else the folder name);
``--labels`` overrides them. The figure is the one the logic task logs for its own run and the
evidence report draws over seeds (:func:`onlstm.figures.accuracy_by_operators`), with the
majority-class rate of the first run as a reference.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from onlstm.figures import ARCH_NAMES, Curve, accuracy_by_operators
from tasks.jobs import run_folder

TABLE = "test/acc_by_ops"  # the key the logic task logs its per-operator table under


def read_accuracy_table(run_dir: str | Path) -> list[dict[str, float]]:
    """Rows of a run's per-operator table: ops, examples, accuracy, majority."""
    rows = run_folder.read_table(run_dir, TABLE)
    if not rows:
        raise FileNotFoundError(f"{run_folder.table_path(run_dir, TABLE)} not found: give the folder of a finished "
                                "`task=logic` run")
    return sorted(({key: float(value) for key, value in row.items()} for row in rows), key=lambda r: r["ops"])


def run_label(run_dir: str | Path) -> str:
    arch = run_folder.config_value(run_dir, "model.arch")
    return ARCH_NAMES.get(arch, str(arch)) if arch else Path(run_dir).name


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m tasks.reports.logic_figure", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders of task=logic")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    parser.add_argument("--labels", nargs="+", help="legend labels, one per run")
    parser.add_argument("--train-max-ops", type=int, default=6, help="shade the lengths beyond this")
    args = parser.parse_args(argv)
    labels = args.labels or [run_label(run) for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(args.runs)} runs but {len(labels)} labels")
    tables = [read_accuracy_table(run) for run in args.runs]
    curves = [Curve(label, [(r["ops"], r["accuracy"]) for r in rows]) for label, rows in zip(labels, tables)]
    majority = Curve("majority class", [(r["ops"], r["majority"]) for r in tables[0]])
    operators = sorted({int(r["ops"]) for rows in tables for r in rows})
    figure = accuracy_by_operators(curves, operators, args.train_max_ops, majority)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120, bbox_inches="tight")
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()

"""Figures and result tables, sent to every configured logger that takes them (rank zero only).

Files are always written under the run's output folder (``figures/``, ``tables/``), so a CSV-only
run keeps them beside its metrics; TensorBoard gets images and markdown text, wandb gets images
and tables.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger


def _output_dir(trainer: pl.Trainer, kind: str) -> Path:
    path = Path(trainer.default_root_dir) / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def _file_name(key: str) -> str:
    return key.replace("/", "_").replace(" ", "_")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def log_figure(trainer: pl.Trainer, key: str, figure) -> Path | None:
    """Save a matplotlib figure as PNG and log it as an image; returns the PNG path on rank zero."""
    if not trainer.is_global_zero:
        return None
    path = _output_dir(trainer, "figures") / f"{_file_name(key)}.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(key, figure, global_step=trainer.global_step, close=False)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
    return path


def log_table(trainer: pl.Trainer, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path | None:
    """Write a table as CSV and markdown and log it; returns the markdown path on rank zero."""
    if not trainer.is_global_zero:
        return None
    folder = _output_dir(trainer, "tables")
    name = _file_name(key)
    with open(folder / f"{name}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    text = markdown_table(columns, rows)
    md_path = folder / f"{name}.md"
    md_path.write_text(text)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, text, global_step=trainer.global_step)
        elif isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=list(columns), data=[list(r) for r in rows], step=trainer.global_step)
    return md_path

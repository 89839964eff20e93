"""Experiment-tracker plumbing: remember the wandb run of a checkpoint, so a resumed run continues it.

The run id is written into every checkpoint (``checkpoint["wandb_run_id"]``); ``train.py
ckpt_path=<ckpt> logger=wandb`` then resumes that wandb run (``resume="allow"``) unless
``logger.wandb.id`` is given explicitly.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

log = logging.getLogger("onlstm.train")

CHECKPOINT_KEY = "wandb_run_id"


def wandb_key_configured() -> bool:
    """An API key in the environment or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_offline() -> bool:
    """Offline unless WANDB_MODE=online, or a key is configured and WANDB_MODE does not say offline."""
    mode = os.environ.get("WANDB_MODE", "")
    if mode == "online":
        return False
    return mode in ("offline", "dryrun", "disabled") or not wandb_key_configured()


class WandbRunIdInCheckpoint(pl.Callback):
    """Stores the wandb run id in each checkpoint (the id rank zero's logger holds)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.version:
                checkpoint[CHECKPOINT_KEY] = str(logger.version)


def wandb_run_id_of(checkpoint: dict[str, Any] | None) -> str | None:
    value = (checkpoint or {}).get(CHECKPOINT_KEY)
    return str(value) if value else None


def offline_run_folders(save_dir: str | Path) -> list[Path]:
    """The offline wandb runs under a run folder (what ``wandb sync`` takes)."""
    return sorted(Path(save_dir, "wandb").glob("offline-run-*"))


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts; a run that
    continues in its own folder (``resume=true``) must keep the rows its earlier attempts logged.
    New rows follow them under the same header (Lightning rewrites the header when keys appear)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self.metrics_keys = list(next(csv.reader(handle), []))


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to the ``metrics.csv`` it finds instead of deleting it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

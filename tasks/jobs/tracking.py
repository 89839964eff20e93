"""The loggers' plumbing: figures and tables sent to every logger, wandb offline unless configured
and continued from a checkpoint, and a CSV log that a resumed run appends to.

Figures and tables are always written into the run folder too (``figures/``, ``tables/``:
:mod:`tasks.jobs.run_folder`), so a CSV-only run keeps them beside its metrics; TensorBoard gets
images and markdown text, wandb gets images and tables; rank zero only.

The wandb run id is written into every checkpoint (``checkpoint["wandb_run_id"]``); ``train.py
ckpt_path=<ckpt> logger=wandb`` then resumes that wandb run (``resume="allow"``) unless
``logger.wandb.id`` is given explicitly.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from onlstm.checkpoints import read_checkpoint
from tasks.jobs import run_folder

log = logging.getLogger("onlstm.train")

CHECKPOINT_KEY = "wandb_run_id"


# ------------------------------------------------------------------------------ figures and tables
def log_figure(trainer: pl.Trainer, key: str, figure) -> Path | None:
    """Save a matplotlib figure as PNG and log it as an image; returns the PNG path on rank zero."""
    if not trainer.is_global_zero:
        return None
    path = run_folder.figure_path(trainer.default_root_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    md_path, text = run_folder.write_table(trainer.default_root_dir, key, columns, rows)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, text, global_step=trainer.global_step)
        elif isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=list(columns), data=[list(r) for r in rows], step=trainer.global_step)
    return md_path


# ------------------------------------------------------------------------------ hyperparameters
def log_config(trainer: pl.Trainer, cfg: DictConfig) -> None:
    """The composed config, as written (interpolations unresolved), to every logger."""
    hparams = OmegaConf.to_container(cfg, resolve=False)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


def log_hparams_with_final_metrics(cfg: DictConfig, trainer: pl.Trainer, metrics: dict[str, float],
                                   model: dict | None = None) -> None:
    """TensorBoard's HParams tab compares runs by hyperparameters and final metrics, but only for
    runs whose hparams were written together with metrics (an hparams summary without metrics is
    not shown; ``logger.tensorboard.default_hp_metric`` is off, so the start of the run writes none):
    write them once, at the end, with every final metric (the sweep's optimised one included).
    ``model``: the backbone when it is not ``cfg.model`` (an evaluated checkpoint's)."""
    def plain(node: DictConfig) -> dict:
        return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")}

    params = {"seed": cfg.seed, "model": model if model is not None else plain(cfg.model),
              "task": {"name": cfg.task.name, "module": plain(cfg.task.module), "datamodule": plain(cfg.task.datamodule)}}
    if cfg.get("run") is not None:
        params["run"] = plain(cfg.run)
    final = {k: v for k, v in metrics.items() if math.isfinite(v)}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and final:
            logger.log_hyperparams(params, metrics=final, step=trainer.global_step)
            logger.finalize("success")  # flush: fit and test have closed their writers already


# ------------------------------------------------------------------------------ wandb


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


def continue_wandb_run(cfg: DictConfig) -> None:
    """Resuming training from a checkpoint continues its wandb run, unless logger.wandb.id is set."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    path = cfg.get("ckpt_path")
    if not wandb_cfg or not cfg.get("train") or wandb_cfg.get("id") or path in (None, "best", "last"):
        return
    if not Path(path).is_file():
        return  # check_checkpoint_path reports it with the fix
    run_id = wandb_run_id_of(read_checkpoint(path))  # read_checkpoint also refuses a bad file
    if run_id:
        log.info("resuming wandb run %s stored in %s", run_id, path)
        with open_dict(cfg):
            cfg.logger.wandb.id = run_id


def offline_run_folders(save_dir: str | Path) -> list[Path]:
    """The offline wandb runs under a run folder (what ``wandb sync`` takes)."""
    return sorted(Path(save_dir, "wandb").glob("offline-run-*"))


# ------------------------------------------------------------------------------ CSV
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

"""What ``train.py`` computes: fit (unless ``train=false``), test the best checkpoint, then run the
evaluation tasks an experiment lists in ``evaluate_after`` on it."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from onlstm.checkpoints import check_checkpoint_path
from tasks.jobs import run_folder
from tasks.jobs.callbacks import LastCheckpoint
from tasks.jobs.task_from_config import build_module, evaluation_module, run_options
from tasks.jobs.tracking import WandbRunIdInCheckpoint, continue_wandb_run, log_config, log_hparams_with_final_metrics
from tasks.jobs.trainer import (
    best_checkpoint,
    build_trainer,
    evaluation_callbacks,
    harvest,
    instantiate_group,
    one_device_trainer,
    trainer_for_test,
)

log = logging.getLogger("onlstm.train")


def fit_and_test(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg.task`` (unless ``train=false``), test (``test=true``: the best checkpoint, or
    ``ckpt_path`` without training) and run ``evaluate_after``; the metrics of all of them."""
    continue_wandb_run(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.task.datamodule, _convert_="all")
    module = build_module(cfg, datamodule)
    metrics: dict[str, float] = {"model/parameters": float(sum(p.numel() for p in module.parameters()))}
    callbacks = instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.task.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        callbacks.append(WandbRunIdInCheckpoint())
    trainer = build_trainer(cfg, cfg.task, callbacks, loggers)
    try:
        log_config(trainer, cfg)
        ckpt_path = check_checkpoint_path(cfg.get("ckpt_path"))
        if cfg.get("train"):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            metrics.update(harvest(trainer))
        if cfg.get("test"):
            test_ckpt = ckpt_path
            if cfg.get("train"):
                test_ckpt = best_checkpoint(trainer) or None
                if test_ckpt is None:
                    log.warning("no best checkpoint was saved; testing the current weights")
            trainer = trainer_for_test(cfg, trainer)
            if trainer is None:  # another rank, after a distributed fit: rank zero tests
                return metrics
            trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
            metrics.update(harvest(trainer))
        if cfg.get("train") and cfg.get("evaluate_after"):
            metrics.update(evaluate_after_fit(cfg, trainer))
    except SIGTERMException:
        # Lightning stops its loops with this SystemExit subclass after a SIGTERM (and LastCheckpoint
        # routes Ctrl-C the same way); as it is, the process would exit with status 0, and a
        # preempted job would look finished to `make`, a shell loop or a scheduler.
        stopped = next((c.stopped_by for c in callbacks if isinstance(c, LastCheckpoint) and c.stopped_by), None)
        stopped = stopped or signal.SIGTERM
        log.warning("run stopped by %s; output folder: %s (no %s: resume=true or ckpt_path=%s continues it)",
                    stopped.name, cfg.paths.output_dir, run_folder.DONE,
                    run_folder.last_checkpoint_path(cfg.paths.output_dir))
        raise SystemExit(128 + int(stopped)) from None
    log_hparams_with_final_metrics(cfg, trainer, metrics)
    return metrics


def evaluate_after_fit(cfg: DictConfig, trainer: pl.Trainer) -> dict[str, float]:
    """Run the evaluation tasks of ``cfg.evaluate_after`` (task configs placed there by an
    experiment's defaults, e.g. ``/task@evaluate_after.syneval: syneval``) on the best checkpoint,
    on one device, logging to the same loggers."""
    if trainer.fast_dev_run:
        log.warning("evaluate_after skipped: fast_dev_run trains no checkpoint worth scoring")
        return {}
    best = best_checkpoint(trainer) or str(run_folder.last_checkpoint_path(cfg.paths.output_dir))
    if not Path(best).is_file():
        log.warning("evaluate_after skipped: no checkpoint was saved (fast_dev_run?)")
        return {}
    metrics: dict[str, float] = {}
    for name, task in cfg.evaluate_after.items():
        log.info("evaluate_after: task=%s on %s", name, best)
        datamodule = instantiate(task.datamodule, _convert_="all")
        module = evaluation_module(task, run_options(cfg), datamodule, best)
        evaluator = one_device_trainer(cfg, task, trainer) if trainer.world_size > 1 else build_trainer(
            cfg, task, evaluation_callbacks(cfg), trainer.loggers)
        if evaluator is None:  # not rank zero
            continue
        evaluator.test(module, datamodule=datamodule)
        metrics.update(harvest(evaluator))
    return metrics

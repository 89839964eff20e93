"""The one place a Trainer is built (:func:`build_trainer`, and :func:`one_device_trainer` for the
tests that must not run distributed) and the one place its metrics are read (:func:`harvest`)."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("onlstm.train")

# Tasks whose test metrics count every item exactly once across DDP ranks: lm (each rank reads its
# own block of stream columns; nll/count SumMetrics summed), parsing (records gathered and
# deduplicated by index), syneval (CatMetric keyed by edge id). Any other task is tested on one
# device after a distributed fit (see docs/scaling.md).
DDP_EXACT_TEST_TASKS = frozenset({"lm", "parsing", "syneval"})


def instantiate_group(group: DictConfig | None) -> list:
    """The objects of a config group of ``_target_`` nodes (callbacks, loggers); null ones skipped."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]


def evaluation_callbacks(cfg: DictConfig) -> list:
    """The callbacks of an evaluation-only Trainer: the progress log (rate and ETA of a suite that
    takes minutes), when configured; checkpoints and training callbacks have nothing to do there."""
    node = (cfg.get("callbacks") or {}).get("progress_log")
    return [instantiate(node)] if node else []


def build_trainer(cfg: DictConfig, task: DictConfig, callbacks: list, loggers: list, **overrides) -> pl.Trainer:
    """``cfg.trainer`` with the task's ``trainer_kwargs`` (and ``overrides`` on top), the callbacks
    and the loggers (none: Lightning's default logger is off)."""
    kwargs = OmegaConf.to_container(task.trainer_kwargs, resolve=True) if task.get("trainer_kwargs") else {}
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **{**kwargs, **overrides})


def one_device_trainer(cfg: DictConfig, task: DictConfig, trainer: pl.Trainer) -> pl.Trainer | None:
    """An evaluation Trainer on one of ``trainer``'s devices, with its loggers, on rank zero (None on
    the other ranks). After a distributed fit the process group is left first, so that metrics do
    not wait for ranks that have gone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if trainer.global_rank != 0:
        return None
    root = trainer.strategy.root_device
    devices = [root.index] if root.type == "cuda" and root.index is not None else 1
    return build_trainer(cfg, task, evaluation_callbacks(cfg), trainer.loggers, devices=devices, num_nodes=1,
                         strategy="auto")


def trainer_for_test(cfg: DictConfig, trainer: pl.Trainer) -> pl.Trainer | None:
    """``trainer``, or a one-device one (:func:`one_device_trainer`) when ``cfg.task``'s test metrics
    would not be exact under its distributed run."""
    if trainer.world_size == 1 or cfg.task.name in DDP_EXACT_TEST_TASKS:
        return trainer
    log.warning("task=%s: its test metrics are not exact under DDP (ranks would repeat or re-count examples): "
                "testing on one device, on rank zero only", cfg.task.name)
    return one_device_trainer(cfg, cfg.task, trainer)


def harvest(trainer: pl.Trainer) -> dict[str, float]:
    """Every metric the last fit, validation or test logged, as floats."""
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def best_checkpoint(trainer: pl.Trainer) -> str:
    """The best checkpoint's path so far (by the task's metric), "" when none was saved."""
    return getattr(trainer.checkpoint_callback, "best_model_path", "") or ""

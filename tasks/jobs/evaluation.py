"""What ``eval.py`` computes: the test of a checkpoint with a task (parsing, syneval: of an LM; lm,
logic: of their own checkpoints). Where an LM is evaluated (parsing, syneval, lm), ``ckpt_path``
may also be a model folder that ``onlstm-export`` wrote (``onlstm.checkpoints.is_model_folder``)."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from onlstm import BackboneConfig
from onlstm.checkpoints import is_model_folder, read_checkpoint, stored_model_backbone
from tasks.jobs.task_from_config import evaluation_module, run_options
from tasks.jobs.tracking import log_config, log_hparams_with_final_metrics
from tasks.jobs.trainer import build_trainer, evaluation_callbacks, harvest, instantiate_group, trainer_for_test

log = logging.getLogger("onlstm.train")


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, float]:
    """Test ``ckpt_path`` with ``cfg.task``: the model is the checkpoint's or the model folder's
    (``cfg.model`` is not used), the data, the run options, the Trainer and the loggers are this config's."""
    path = cfg.get("ckpt_path")  # None when unset (`???`): omegaconf 2.3's get reads a missing value so
    if path in (None, "best", "last"):
        raise ValueError(f"eval.py evaluates a checkpoint file or an exported model folder: set "
                         f"ckpt_path=/path/to/<run>/checkpoints/<name>.ckpt (got ckpt_path={path})")
    # a missing, truncated or unsafe checkpoint, a folder with a bad file: fails here, naming the file
    checkpoint = None if is_model_folder(path) else read_checkpoint(path)
    backbone = stored_model_backbone(path, checkpoint)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.task.datamodule, _convert_="all")
    module = evaluation_module(cfg.task, run_options(cfg), datamodule, path, checkpoint)
    del checkpoint  # the weights are loaded again where they are used; do not hold two copies
    log.info("evaluating %s with task=%s: %s", path, cfg.task.name, BackboneConfig(**backbone))
    metrics: dict[str, float] = {"model/parameters": float(sum(p.numel() for p in module.parameters()))}
    loggers = instantiate_group(cfg.get("logger"))
    trainer = trainer_for_test(cfg, build_trainer(cfg, cfg.task, evaluation_callbacks(cfg), loggers))
    if trainer is None:  # a rank other than zero of a distributed launch: rank zero tests
        return metrics
    log_config(trainer, cfg)
    # parsing and syneval modules hold the LM they loaded, as does an LM built from a model folder;
    # the trainable tasks' weights come from the checkpoint
    ckpt_path = None if cfg.task.get("evaluates_checkpoint") or is_model_folder(path) else path
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics.update(harvest(trainer))
    log_hparams_with_final_metrics(cfg, trainer, metrics, model=backbone)
    return metrics

"""Builds datamodule, module, callbacks, loggers and Trainer from a composed config, and runs them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from onlstm import BackboneConfig
from tasks.checkpoints import read_checkpoint

log = logging.getLogger("onlstm.train")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wandb_offline"):
        # offline unless the user asked for online mode or configured a key
        OmegaConf.register_new_resolver(
            "wandb_offline",
            lambda: os.environ.get("WANDB_MODE", "") != "online" and not os.environ.get("WANDB_API_KEY"),
        )


def instantiate_group(group: DictConfig | None) -> list:
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]


def check_checkpoint_path(path: str | None) -> str | None:
    """A usable checkpoint path or None; a missing, truncated or unsafe file fails here, clearly."""
    if path is None or path in ("best", "last"):
        return path
    if not Path(path).is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist; give the path of a .ckpt file")
    read_checkpoint(path)  # raises CheckpointError naming the file (truncated, corrupt, pickled code)
    return path


def check_output_dir(cfg: DictConfig) -> None:
    """Refuse to train into a folder that already holds another run's checkpoints."""
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    if cfg.get("train") and folder.is_dir() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder} already holds checkpoints of another run; pick a new hydra.run.dir "
            "(the default is a fresh timestamped folder) or resume with ckpt_path=... from a new folder"
        )


def build_module(cfg: DictConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    model = OmegaConf.to_container(cfg.model, resolve=True)
    BackboneConfig(**model).validate()  # a config error names its key before anything is built
    extra = datamodule.module_kwargs() if hasattr(datamodule, "module_kwargs") else {}
    if cfg.task.get("evaluates_checkpoint"):
        extra["checkpoint"] = check_checkpoint_path(cfg.get("ckpt_path"))
        if extra["checkpoint"] is None:
            raise ValueError(f"task={cfg.task.name} evaluates a trained language model: set ckpt_path=/path/to/lm.ckpt")
    module = instantiate(cfg.task.module, model=model, _convert_="all", **extra)
    if hasattr(datamodule, "use_vocabulary") and hasattr(module, "vocab"):
        datamodule.use_vocabulary(module.vocab)
    return module


def run(cfg: DictConfig) -> dict[str, float]:
    check_output_dir(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.task.datamodule, _convert_="all")
    module = build_module(cfg, datamodule)
    callbacks = instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.task.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer_kwargs = OmegaConf.to_container(cfg.task.trainer_kwargs, resolve=True) if cfg.task.get("trainer_kwargs") else {}
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **trainer_kwargs)

    hparams = OmegaConf.to_container(cfg, resolve=False)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)

    ckpt_path = None if cfg.task.get("evaluates_checkpoint") else check_checkpoint_path(cfg.get("ckpt_path"))
    metrics: dict[str, float] = {}
    if cfg.get("train"):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if cfg.get("test"):
        test_ckpt = ckpt_path
        if cfg.get("train"):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            test_ckpt = best or None
            if not best:
                log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return metrics

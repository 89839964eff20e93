"""Builds datamodule, module, callbacks, loggers and Trainer from a composed config, and runs them:
:func:`run` for ``train.py`` (fit, then test), :func:`evaluate` for ``eval.py`` (test a checkpoint)."""

from __future__ import annotations

import logging
import sys
import math
import signal
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from onlstm import BackboneConfig, ONLSTMStack
from tasks import resume
from tasks.callbacks import LastCheckpoint
from tasks.checkpoints import CheckpointError, read_checkpoint, stored_backbone
from tasks.tracking import WandbRunIdInCheckpoint, wandb_offline, wandb_run_id_of

log = logging.getLogger("onlstm.train")

# Tasks whose test metrics count every item exactly once across DDP ranks: lm (each rank reads its
# own block of stream columns; nll/count SumMetrics summed), parsing (records gathered and
# deduplicated by index), syneval (CatMetric keyed by edge id). Any other task is tested on one
# device after a distributed fit (see docs/scaling.md).
DDP_EXACT_TEST_TASKS = frozenset({"lm", "parsing", "syneval"})


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wandb_offline"):
        # offline unless the user asked for online mode or configured a key
        OmegaConf.register_new_resolver("wandb_offline", wandb_offline)


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


def run_options(cfg: DictConfig) -> dict:
    """The ``run`` node (how the model runs: tasks/schemas/run.py) as the modules' ``run`` argument,
    checked here so that a wrong backend names its key before anything is built."""
    options = OmegaConf.to_container(cfg.run, resolve=True) if cfg.get("run") is not None else {}
    implementation = options.get("implementation")
    if implementation is not None and implementation not in ONLSTMStack.IMPLEMENTATIONS:
        raise ValueError(
            f"run.implementation must be one of {sorted(ONLSTMStack.IMPLEMENTATIONS)}, got {implementation!r} "
            "(docs/performance.md says what each runs)"
        )
    return options


def refuse_evaluation_task(cfg: DictConfig) -> None:
    """train.py trains; a task that only evaluates a trained LM belongs to eval.py."""
    if cfg.task.get("evaluates_checkpoint"):
        name = cfg.task.name
        raise ValueError(
            f"task={name} evaluates a trained language model and trains nothing: run it with "
            f"python eval.py task={name} ckpt_path=/path/to/lm.ckpt (train.py trains: task=lm, task=logic)"
        )


def build_module(cfg: DictConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    model = OmegaConf.to_container(cfg.model, resolve=True)
    BackboneConfig(**model).validate()  # a config error names its key before anything is built
    extra = datamodule.module_kwargs() if hasattr(datamodule, "module_kwargs") else {}
    module = instantiate(cfg.task.module, model=model, run=run_options(cfg), _convert_="all", **extra)
    if hasattr(datamodule, "use_vocabulary") and hasattr(module, "vocab"):
        datamodule.use_vocabulary(module.vocab)
    return module


def module_from_checkpoint(cfg: DictConfig, path: str, checkpoint: dict, extra: dict) -> pl.LightningModule:
    """The task module a trainable task's checkpoint was written by, rebuilt from the arguments it
    stored (``hyper_parameters``: the backbone, and e.g. the logic classifier's ``mlp_hidden``), so
    that evaluating needs neither ``model=`` nor the experiment that trained it. What the data
    says (``extra``: vocabulary, test operator counts) and the run options come from this config;
    the weights are loaded by ``trainer.test(ckpt_path=...)``."""
    cls = get_class(cfg.task.module._target_)
    try:
        arguments = dict(checkpoint["hyper_parameters"])
        arguments["model"] = stored_backbone(checkpoint)
        return cls(**{**arguments, **extra, "run": run_options(cfg)})
    except (KeyError, TypeError) as err:
        raise CheckpointError(
            f"{path}: not a checkpoint of task={cfg.task.name} ({cls.__name__} cannot be built from what it stores: "
            f"{type(err).__name__}: {err}); evaluate it with the task that trained it (task=lm or task=logic)"
        ) from None


def build_evaluation_module(cfg: DictConfig, datamodule: pl.LightningDataModule, path: str,
                            checkpoint: dict) -> pl.LightningModule:
    extra = datamodule.module_kwargs() if hasattr(datamodule, "module_kwargs") else {}
    if cfg.task.get("evaluates_checkpoint"):  # parsing, syneval: the module loads the LM itself
        module = instantiate(cfg.task.module, checkpoint=path, run=run_options(cfg), _convert_="all", **extra)
    else:
        module = module_from_checkpoint(cfg, path, checkpoint, extra)
    if hasattr(datamodule, "use_vocabulary") and hasattr(module, "vocab"):
        datamodule.use_vocabulary(module.vocab)
    return module


def resume_wandb_run(cfg: DictConfig) -> None:
    """Resuming from a checkpoint continues its wandb run, unless logger.wandb.id is set."""
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


def evaluation_callbacks(cfg: DictConfig) -> list:
    """The callbacks of an evaluation-only Trainer: the progress log (rate and ETA of a suite that
    takes minutes), when configured; checkpoints and training callbacks have nothing to do there."""
    node = (cfg.get("callbacks") or {}).get("progress_log")
    return [instantiate(node)] if node else []


def one_device_test_trainer(cfg: DictConfig, trainer: pl.Trainer, trainer_kwargs: dict) -> pl.Trainer | None:
    """After a distributed fit: a one-device Trainer on rank zero (None on the other ranks)."""
    log.warning(
        "task=%s: its test metrics are not exact under DDP (ranks would repeat or re-count examples): "
        "testing the best checkpoint on one device, on rank zero only", cfg.task.name,
    )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # metrics must not wait for ranks that have left
    if trainer.global_rank != 0:
        return None
    root = trainer.strategy.root_device
    devices = [root.index] if root.type == "cuda" and root.index is not None else 1
    one = {"devices": devices, "num_nodes": 1, "strategy": "auto"}
    return instantiate(cfg.trainer, callbacks=evaluation_callbacks(cfg), logger=trainer.loggers or False,
                       **{**trainer_kwargs, **one})


def continue_where_stopped(cfg: DictConfig) -> dict[str, float] | None:
    """``resume=true``: the stored metrics of a finished run folder (nothing to do), or None after
    pointing ``ckpt_path`` at the folder's ``last.ckpt`` when an earlier attempt was interrupted."""
    output_dir = cfg.paths.output_dir
    finished = resume.finished_metrics(output_dir)
    if finished is not None:
        log.info("%s already holds a finished run (%s): skipped", output_dir, resume.DONE_FILE)
        return finished
    last = resume.last_checkpoint(output_dir)
    if last is not None and cfg.get("train"):
        log.info("continuing the interrupted run in %s from %s", output_dir, last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
    else:
        check_output_dir(cfg)
    return None


def check_required_runs(cfg: DictConfig) -> None:
    """``requires_finished_runs``: folders of runs this one builds on (e.g. the LM a parsing job
    reads); each must hold a finished run, so that nothing is computed from a half-trained model."""
    for folder in cfg.get("requires_finished_runs") or []:
        if resume.finished_metrics(folder) is None:
            raise FileNotFoundError(
                f"{folder} holds no finished run ({resume.DONE_FILE} is missing): run (or resume) the job that "
                "trains it first, e.g. make evidence runs experiment=evidence_lm before experiment=evidence_parsing"
            )


def run(cfg: DictConfig) -> dict[str, float]:
    """``train.py``: fit (unless ``train=false``), then test, as one resumable job."""
    refuse_evaluation_task(cfg)
    return as_job(cfg, fit_and_test)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """``eval.py``: test the checkpoint at ``ckpt_path`` with ``cfg.task``, as one resumable job."""
    return as_job(cfg, evaluate_checkpoint)


def as_job(cfg: DictConfig, work) -> dict[str, float]:
    """``work(cfg)`` as a job of a sweep: the runs it builds on must have finished, a finished job
    (``done.json``) is skipped with ``resume=true``, and a finished one records its metrics."""
    started = time.time()
    commit = resume.code_commit()  # the code this process runs: read before it can change
    check_required_runs(cfg)
    if cfg.get("resume"):
        finished = continue_where_stopped(cfg)
        if finished is not None:
            return finished
    else:
        check_output_dir(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    metrics = work(cfg)
    if rank_zero_only.rank != 0:  # under DDP every rank runs this; rank zero holds the complete metrics
        return metrics
    resume.mark_done(cfg.paths.output_dir, metrics, commit, started)
    return metrics


def fit_and_test(cfg: DictConfig) -> dict[str, float]:
    resume_wandb_run(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.task.datamodule, _convert_="all")
    module = build_module(cfg, datamodule)
    parameters = sum(p.numel() for p in module.parameters())
    callbacks = instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.task.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        callbacks.append(WandbRunIdInCheckpoint())
    trainer_kwargs = OmegaConf.to_container(cfg.task.trainer_kwargs, resolve=True) if cfg.task.get("trainer_kwargs") else {}
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **trainer_kwargs)
    try:
        return fit_then_test(cfg, trainer, module, datamodule, parameters, trainer_kwargs)
    except SIGTERMException:
        # Lightning stops its loops with this SystemExit subclass after a SIGTERM (and LastCheckpoint
        # routes Ctrl-C the same way); as it is, the process would exit with status 0, and a
        # preempted job would look finished to `make`, a shell loop or a scheduler.
        stopped = next((c.stopped_by for c in callbacks if isinstance(c, LastCheckpoint) and c.stopped_by), None)
        stopped = stopped or signal.SIGTERM
        log.warning("run stopped by %s; output folder: %s (no done.json: resume=true or ckpt_path=<folder>/%s "
                    "continues it)", stopped.name, cfg.paths.output_dir, resume.LAST_CHECKPOINT)
        raise SystemExit(128 + int(stopped)) from None


def fit_then_test(cfg: DictConfig, trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
                  parameters: int, trainer_kwargs: dict) -> dict[str, float]:
    hparams = OmegaConf.to_container(cfg, resolve=False)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)

    ckpt_path = check_checkpoint_path(cfg.get("ckpt_path"))
    metrics: dict[str, float] = {"model/parameters": float(parameters)}
    if cfg.get("train"):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if cfg.get("test"):
        test_ckpt = ckpt_path
        if cfg.get("train"):
            best = getattr(trainer.checkpoint_callback, "best_model_path", "")
            test_ckpt = best or None
            if not best:
                log.warning("no best checkpoint was saved; testing the current weights")
        if trainer.world_size > 1 and cfg.task.name not in DDP_EXACT_TEST_TASKS:
            trainer = one_device_test_trainer(cfg, trainer, trainer_kwargs)
            if trainer is None:
                return metrics
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if cfg.get("train") and cfg.get("evaluate_after"):
        metrics.update(evaluate_after_fit(cfg, trainer, trainer_kwargs))
    log_hparams_with_final_metrics(cfg, trainer, metrics)
    return metrics


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


def evaluate_after_fit(cfg: DictConfig, trainer: pl.Trainer, trainer_kwargs: dict) -> dict[str, float]:
    """Run the evaluation tasks of ``cfg.evaluate_after`` (task configs placed there by an
    experiment's defaults, e.g. ``/task@evaluate_after.syneval: syneval``) on the best checkpoint,
    on one device, logging to the same loggers."""
    if trainer.fast_dev_run:
        log.warning("evaluate_after skipped: fast_dev_run trains no checkpoint worth scoring")
        return {}
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if not best:
        best = str(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    if not Path(best).is_file():
        log.warning("evaluate_after skipped: no checkpoint was saved (fast_dev_run?)")
        return {}
    metrics: dict[str, float] = {}
    for name, task in cfg.evaluate_after.items():
        log.info("evaluate_after: task=%s on %s", name, best)
        datamodule = instantiate(task.datamodule, _convert_="all")
        module = instantiate(task.module, checkpoint=best, run=run_options(cfg), _convert_="all")
        datamodule.use_vocabulary(module.vocab)
        kwargs = OmegaConf.to_container(task.trainer_kwargs, resolve=True) if task.get("trainer_kwargs") else {}
        evaluator = one_device_test_trainer(cfg, trainer, kwargs) if trainer.world_size > 1 else instantiate(
            cfg.trainer, callbacks=evaluation_callbacks(cfg), logger=trainer.loggers or False, **kwargs)
        if evaluator is None:  # not rank zero
            continue
        evaluator.test(module, datamodule=datamodule)
        metrics.update({k: float(v) for k, v in evaluator.callback_metrics.items()})
    return metrics


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, float]:
    """Test ``ckpt_path`` with ``cfg.task``: the model is the checkpoint's (``cfg.model`` is not
    used), the data, the run options, the Trainer and the loggers are this config's."""
    path = None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.get("ckpt_path")
    if path in (None, "best", "last"):
        raise ValueError(f"eval.py evaluates a checkpoint file: set ckpt_path=/path/to/<run>/checkpoints/<name>.ckpt "
                         f"(got ckpt_path={path})")
    checkpoint = read_checkpoint(path)  # a missing, truncated or unsafe file fails here, naming it
    try:
        backbone = stored_backbone(checkpoint)
    except (KeyError, TypeError):
        raise CheckpointError(f"{path}: not a checkpoint of this project (no hyper_parameters.model)") from None
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.task.datamodule, _convert_="all")
    module = build_evaluation_module(cfg, datamodule, path, checkpoint)
    del checkpoint  # the weights are loaded again where they are used; do not hold two copies
    log.info("evaluating %s with task=%s: %s", path, cfg.task.name, BackboneConfig(**backbone))
    loggers = instantiate_group(cfg.get("logger"))
    kwargs = OmegaConf.to_container(cfg.task.trainer_kwargs, resolve=True) if cfg.task.get("trainer_kwargs") else {}
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=evaluation_callbacks(cfg), logger=loggers or False, **kwargs)
    if trainer.world_size > 1 and cfg.task.name not in DDP_EXACT_TEST_TASKS:
        log.warning("task=%s: its test metrics are not exact under DDP: testing on one device", cfg.task.name)
        one = {"devices": 1, "num_nodes": 1, "strategy": "auto"}
        trainer = instantiate(cfg.trainer, callbacks=evaluation_callbacks(cfg), logger=loggers or False,
                              **{**kwargs, **one})
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=False))
    metrics: dict[str, float] = {"model/parameters": float(sum(p.numel() for p in module.parameters()))}
    # parsing and syneval modules hold the LM they loaded; the trainable tasks' weights come from the checkpoint
    ckpt_path = None if cfg.task.get("evaluates_checkpoint") else path
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    log_hparams_with_final_metrics(cfg, trainer, metrics, model=backbone)
    return metrics


def closing_the_tracker(entry, cfg: DictConfig, what: str) -> dict[str, float]:
    """``entry(cfg)`` for train.py and eval.py: a failure is logged with the run's folder, and an
    open wandb run is always finished, so that the next job of a multirun starts its own."""
    try:
        return entry(cfg)
    except Exception:
        log.exception("%s failed; output folder: %s", what, cfg.paths.get("output_dir", "?"))
        raise
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """What a Hydra sweeper (Optuna) optimises: the run's ``task.optimized_metric``."""
    name = cfg.task.get("optimized_metric")
    return metrics[name] if name and name in metrics else None

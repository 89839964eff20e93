"""The jobs ``train.py`` and ``eval.py`` run, from a composed config: :func:`train` (fit, then test:
:mod:`tasks.jobs.training`) and :func:`evaluate` (test a checkpoint: :mod:`tasks.jobs.evaluation`),
each as one job of a sweep that can be started again.

With ``resume=true`` a job runs in a folder fixed in advance (a sweep's ``hydra.sweep.dir`` /
``subdir`` naming each job by its overrides, or ``hydra.run.dir``) instead of a fresh timestamped
one, so running the same command again finds its earlier work:

- ``done.json`` in the folder: the job finished; its stored metrics are returned, nothing runs;
- ``checkpoints/last.ckpt`` (an interrupted training job): training continues from it in the same
  folder (weights, optimiser, data position, carried hidden state, RNG, time budget);
- neither: the job starts.

Every job, with or without ``resume``, writes ``done.json`` when it ends without an error (the
layout: :mod:`tasks.jobs.run_folder`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from tasks.jobs import run_folder
from tasks.jobs.evaluation import evaluate_checkpoint
from tasks.jobs.provenance import code_commit, machine
from tasks.jobs.tracking import wandb_offline
from tasks.jobs.training import fit_and_test

log = logging.getLogger("onlstm.train")


def console_script(name: str, entry: str, conf_dir: Path, main: Callable[[], object]) -> None:
    """An installed console script (``onlstm-train``, ``onlstm-eval``): ``main``, once the config
    folder is known to exist. The Hydra configs (``conf/``) live in the project checkout, beside the
    entry module; a non-editable install copies the module without them, and Hydra's own error
    would not say what to do."""
    if not conf_dir.is_dir():
        sys.exit(f"{name}: no config folder {conf_dir}: the configs are in the project checkout; install it "
                 f"editable (pip install -e <checkout>) or run python {entry} from the checkout")
    main()


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wandb_offline"):
        # offline unless the user asked for online mode or configured a key
        OmegaConf.register_new_resolver("wandb_offline", wandb_offline)


def train(cfg: DictConfig) -> dict[str, float]:
    """``train.py``: fit (unless ``train=false``), then test, as one resumable job."""
    with closing_the_tracker(cfg, "run"):
        refuse_evaluation_task(cfg)
        return as_job(cfg, fit_and_test)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """``eval.py``: test the checkpoint at ``ckpt_path`` with ``cfg.task``, as one resumable job."""
    with closing_the_tracker(cfg, "evaluation"):
        return as_job(cfg, evaluate_checkpoint)


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """What a Hydra sweeper (Optuna) optimises: the run's ``task.optimized_metric``."""
    name = cfg.task.get("optimized_metric")
    return metrics[name] if name and name in metrics else None


def refuse_evaluation_task(cfg: DictConfig) -> None:
    """train.py trains; a task that only evaluates a trained LM belongs to eval.py."""
    if cfg.task.get("evaluates_checkpoint"):
        name = cfg.task.name
        raise ValueError(
            f"task={name} evaluates a trained language model and trains nothing: run it with "
            f"python eval.py task={name} ckpt_path=/path/to/lm.ckpt (train.py trains: task=lm, task=logic)"
        )


@contextmanager
def closing_the_tracker(cfg: DictConfig, what: str) -> Iterator[None]:
    """A failure inside is logged with the run's folder, and an open wandb run is always finished,
    so that the next job of a multirun starts its own."""
    try:
        yield
    except Exception:
        log.exception("%s failed; output folder: %s", what, cfg.paths.get("output_dir", "?"))
        raise
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()


def as_job(cfg: DictConfig, work: Callable[[DictConfig], dict[str, float]]) -> dict[str, float]:
    """``work(cfg)`` as a job of a sweep: the runs it builds on must have finished, a finished job
    (``done.json``) is skipped with ``resume=true``, and a finished one records its metrics."""
    started = time.time()
    commit = code_commit()  # the code this process runs: read before it can change
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
    run_folder.write_done(cfg.paths.output_dir, metrics, commit, machine(), started)
    return metrics


def check_required_runs(cfg: DictConfig) -> None:
    """``requires_finished_runs``: folders of runs this one builds on (e.g. the LM a parsing job
    reads); each must hold a finished run, so that nothing is computed from a half-trained model."""
    for folder in cfg.get("requires_finished_runs") or []:
        if run_folder.finished_metrics(folder) is None:
            raise FileNotFoundError(
                f"{folder} holds no finished run ({run_folder.DONE} is missing): run (or resume) the job that "
                "trains it first, e.g. make evidence runs experiment=evidence_lm before experiment=evidence_parsing"
            )


def continue_where_stopped(cfg: DictConfig) -> dict[str, float] | None:
    """``resume=true``: the stored metrics of a finished run folder (nothing to do), or None after
    pointing ``ckpt_path`` at the folder's ``last.ckpt`` when an earlier attempt was interrupted."""
    output_dir = cfg.paths.output_dir
    finished = run_folder.finished_metrics(output_dir)
    if finished is not None:
        log.info("%s already holds a finished run (%s): skipped", output_dir, run_folder.DONE)
        return finished
    last = run_folder.last_checkpoint(output_dir)
    if last is not None and cfg.get("train"):
        log.info("continuing the interrupted run in %s from %s", output_dir, last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
    else:
        check_output_dir(cfg)
    return None


def check_output_dir(cfg: DictConfig) -> None:
    """Refuse to train into a folder that already holds another run's checkpoints."""
    folder = run_folder.checkpoints_dir(cfg.paths.output_dir)
    if cfg.get("train") and folder.is_dir() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder} already holds checkpoints of another run; pick a new hydra.run.dir "
            "(the default is a fresh timestamped folder) or resume with ckpt_path=... from a new folder"
        )

"""The run machinery's Lightning callbacks: where a run stops and what it keeps on disk.

:class:`LastCheckpoint` (the state a run continues from), :class:`CpuTimeBudget` (stop after so
many CPU minutes), :class:`KeepBestAtCpuMarks` (the best checkpoint at fixed CPU minutes),
:class:`SaveInitialWeights` (the weights before training). The checkpoints' names are the run
folder's (:mod:`tasks.jobs.run_folder`). The progress log is :mod:`tasks.jobs.progress_log`; a
task's own callbacks live beside it (the LM's NT-ASGD switch).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from tasks.jobs import run_folder
from tasks.jobs.trainer import best_checkpoint

log = logging.getLogger("onlstm.train")


class CpuTimeBudget(pl.Callback):
    """Stop training once fit has used ``minutes`` of the process's CPU time, all attempts of a
    resumed run together (the used time travels in the checkpoint).

    Lightning's ``max_time`` counts wall-clock time, which depends on whatever else the machine runs:
    two one-thread jobs side by side, or a job sharing the machine with a test run, would get unequal
    amounts of computation. CPU time of a one-thread run is the wall time it would take on an idle
    core, whatever else runs. Validation inside fit counts, as it does for ``max_time``. Logs the
    time used at every validation as ``time/cpu_minutes`` (for perplexity-against-time curves).
    """

    def __init__(self, minutes: float):
        if minutes <= 0:
            raise ValueError(f"callbacks.cpu_time_budget.minutes must be positive, got {minutes}")
        self.budget_seconds = 60.0 * minutes
        self._offset = 0.0
        self._start: float | None = None

    def used_seconds(self) -> float:
        running = 0.0 if self._start is None else time.process_time() - self._start
        return self._offset + running

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.process_time()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_when_used_up(trainer)  # a run resumed with its budget spent trains no further batch

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self._stop_when_used_up(trainer)

    def _stop_when_used_up(self, trainer: pl.Trainer) -> None:
        over = self.used_seconds() >= self.budget_seconds
        over = trainer.strategy.broadcast(over)
        if over and not trainer.should_stop:
            trainer.should_stop = True
            log.info("CPU-time budget of %.1f minutes used up at step %d: stopping", self.budget_seconds / 60,
                     trainer.global_step)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            pl_module.log("time/cpu_minutes", self.used_seconds() / 60.0)

    def state_dict(self) -> dict:
        return {"cpu_seconds": self.used_seconds()}

    def load_state_dict(self, state_dict: dict) -> None:
        # restored before training continues: what earlier attempts used counts against the budget
        self._offset = float(state_dict["cpu_seconds"])
        self._start = time.process_time()


class KeepBestAtCpuMarks(pl.Callback):
    """Copies of the best checkpoint so far, as the run's CPU time (:class:`CpuTimeBudget`'s clock)
    passes each of ``minutes``: ``<dirpath>/best_cpu040min.ckpt`` and so on.

    One long run then holds the model that each shorter budget would have ended with (the best by
    the task's validation metric among the validations before the mark), so a quality-against-
    training-time curve costs one run instead of one run per budget. A mark is copied at the end of
    the first batch at or past it; a mark passed before any best checkpoint exists is skipped with
    a warning. Which marks are done travels in the checkpoint, so a resumed run does not copy a
    mark again from a later best.
    """

    def __init__(self, minutes: list[float], dirpath: str):
        if not minutes or any(m <= 0 for m in minutes):
            raise ValueError(f"callbacks.best_at_cpu_marks.minutes must be positive numbers, got {minutes}")
        self.minutes = sorted(float(m) for m in minutes)
        self.dirpath = Path(dirpath)
        self.done: set[float] = set()

    def _budget(self, trainer: pl.Trainer) -> CpuTimeBudget:
        budget = next((c for c in trainer.callbacks if isinstance(c, CpuTimeBudget)), None)
        if budget is None:
            raise ValueError("callbacks.best_at_cpu_marks needs callbacks.cpu_time_budget: the marks are on its clock")
        return budget

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._budget(trainer)  # a config without the clock fails before training, not at the first mark

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self._copy_passed_marks(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._copy_passed_marks(trainer)

    def _copy_passed_marks(self, trainer: pl.Trainer) -> None:
        used = self._budget(trainer).used_seconds() / 60.0
        passed = [m for m in self.minutes if m <= used and m not in self.done]
        if not passed or not trainer.is_global_zero:
            return
        best = best_checkpoint(trainer)
        for mark in passed:
            self.done.add(mark)
            if not best or not Path(best).is_file():
                log.warning("CPU mark %g min passed at step %d before any best checkpoint was saved: no %s",
                            mark, trainer.global_step, run_folder.cpu_mark_checkpoint_name(mark))
                continue
            target = self.dirpath / run_folder.cpu_mark_checkpoint_name(mark)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(best, tmp)
            os.replace(tmp, target)  # a run killed while copying leaves no half file under the mark's name
            log.info("CPU mark %g min passed at step %d (%.1f CPU min used): %s kept as %s", mark,
                     trainer.global_step, used, best, target)

    def state_dict(self) -> dict:
        return {"done": sorted(self.done)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.done = {float(m) for m in state_dict["done"]}


class SaveInitialWeights(pl.Callback):
    """Write the model as it is before its first update (``<dirpath>/initial.ckpt``, weights only):
    the untrained control of the parsing evidence reads its master gates. Skipped on resume."""

    def __init__(self, dirpath: str, filename: str = run_folder.INITIAL_CHECKPOINT):
        self.path = Path(dirpath) / filename

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is None and trainer.global_step == 0:
            trainer.save_checkpoint(self.path, weights_only=True)


class LastCheckpoint(Checkpoint):
    """``<dirpath>/last.ckpt``: the state a run continues from (``ckpt_path=...`` or ``resume=true``).

    Written at every point from which a resumed run continues exactly as an uninterrupted one:

    - at the end of every validation inside fit, whatever ``trainer.val_check_interval`` is
      (a validation at the epoch's last batch is covered by the epoch-end save that follows it);
    - at every epoch end, after the epoch-end hooks (the NT-ASGD switch, for instance);
    - every ``every_n_train_steps`` optimizer steps when > 0, after the batch (a validation or an
      epoch end right after that batch saves instead, so that a resumed run does not skip it);
    - when the process is asked to stop: SIGTERM (a cluster's preemption, ``kill``) or SIGINT
      (Ctrl-C), at the end of the batch (or validation) that is running, then the process exits
      with status 128 + the signal's number (143 for SIGTERM, 130 for SIGINT).

    Signals build on Lightning's own handling: during fit, Lightning's signal connector answers
    SIGTERM by setting ``trainer.received_sigterm`` (and, on SLURM with auto-requeue, composes it
    with its requeue handlers; SLURM's requeue signal, SIGUSR1 by default, is left to Lightning),
    and its loops then raise ``SIGTERMException`` at the next batch boundary, including in the
    middle of a validation: a checkpoint taken there would lose the partly summed validation
    metrics. So this callback holds a signal until the batch (or the validation) in progress has
    ended, saves ``last.ckpt`` at that point, and only then passes the signal to the handler
    Lightning installed, whose loops stop the run right after. Ctrl-C takes the same path; a second
    Ctrl-C raises KeyboardInterrupt at once (Lightning's graceful shutdown, nothing saved, since
    the state in the middle of a batch is not one to resume from).
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 0):
        if every_n_train_steps < 0:
            raise ValueError(f"callbacks.last_checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.path = Path(dirpath) / run_folder.LAST_CHECKPOINT
        self.every_n_train_steps = every_n_train_steps
        self.stopped_by: signal.Signals | None = None  # the signal that asked the run to stop
        self._saved_step = -1
        self._pending = False  # a signal held until the batch or validation in progress ends
        self._lightning_handler = None
        self._trainer: pl.Trainer | None = None
        self._in_training = False

    # ------------------------------------------------------------------ signals
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the resumed state is already on disk: nothing to save until an optimizer step is taken
        self._saved_step = trainer.global_step
        self._trainer, self._in_training = trainer, True
        # Lightning registers its SIGTERM handler just before the fit stage runs and restores the
        # handlers it found when fit ends (its teardown), which removes these too.
        if threading.current_thread() is threading.main_thread():
            self._lightning_handler = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        received = signal.Signals(signum)
        if self.stopped_by is not None:
            if received == signal.SIGINT:
                log.warning("second Ctrl-C: stopping at once; %s is the one saved before", self.path)
                raise KeyboardInterrupt
            return  # a repeated SIGTERM: the stop is already on its way
        self.stopped_by = received
        if not self._in_training:  # setup, sanity check: nothing trained that needs saving
            self._pass_on(received)
            return
        log.warning("%s received: saving %s after the batch or validation in progress, then stopping "
                    "(Ctrl-C again stops at once)", received.name, self.path)
        self._pending = True

    def _pass_on(self, received: signal.Signals) -> None:
        self._pending = False
        if callable(self._lightning_handler):
            self._lightning_handler(int(received), None)
        elif self._trainer is not None:
            raise SIGTERMException  # no Lightning handler (not the main thread): stop the same way

    def _after_save_point(self, trainer: pl.Trainer) -> None:
        pending = self._pending
        if trainer.world_size > 1:
            # every rank must save (a collective) and stop at the same point, whichever got the signal
            pending = trainer.strategy.reduce_boolean_decision(pending, all=False)
        if pending:
            self.stopped_by = self.stopped_by or signal.SIGTERM
            self._save(trainer, f"{self.stopped_by.name} received")
            self._pass_on(self.stopped_by)

    # ------------------------------------------------------------------ save points
    def _save(self, trainer: pl.Trainer, why: str) -> None:
        if trainer.global_step == self._saved_step or trainer.sanity_checking or trainer.fast_dev_run:
            return
        # written to a temporary file, then moved into place; the full state (optimizer, loops), which
        # resuming needs, said explicitly so Lightning does not log its default at every save
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step
        log.info("saved %s at step %d, epoch %d (%s)", self.path, trainer.global_step, trainer.current_epoch, why)

    @staticmethod
    def _more_follows_this_batch(trainer: pl.Trainer) -> bool:
        """True when a validation or the epoch's end runs after this batch (they save instead)."""
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop.batch_progress.is_last_batch or trainer.should_stop or epoch_loop._is_training_done:
            return True
        # Lightning's own decision whether this batch ends with a validation (a private method of
        # the pinned Lightning 2.6; a Lightning without it saves here, before the validation)
        should_check_val = getattr(epoch_loop, "_should_check_val_fx", None)
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        return bool(should_check_val and fetcher is not None and should_check_val(fetcher))

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if self._more_follows_this_batch(trainer):
            return
        if self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0:
            self._save(trainer, f"every {self.every_n_train_steps} steps")
        self._after_save_point(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch's end follows: it saves after the epoch-end hooks
        self._save(trainer, "validation")
        self._after_save_point(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, "epoch end")
        self._after_save_point(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._in_training = False
        self._save(trainer, "end of training")
        if self._pending:  # the signal came as training ended: stop before testing
            self._pending = False
            raise SIGTERMException

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._in_training = False
        if isinstance(exception, KeyboardInterrupt) or self.stopped_by is None:
            return  # an error or a forced stop: the state in the middle of a batch is not saved
        if trainer.global_step != self._saved_step and not trainer.validating:
            self._save(trainer, f"{self.stopped_by.name} received")
        log.warning("stopped by %s at step %d; continue with ckpt_path=%s (or resume=true in the same folder)",
                    self.stopped_by.name, trainer.global_step, self.path)

"""Task-specific Lightning callbacks."""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger("onlstm.train")


class NTASGDSwitch(pl.Callback):
    """Non-monotonically triggered ASGD (Merity et al. 2018), as in the official ON-LSTM code.

    After each validation, switch SGD to ASGD when the validation loss is worse than the best of
    all validations except the last ``nonmono`` ones. Runs in ``on_validation_end``, after the
    module has logged ``val/loss`` and before ModelCheckpoint (which Lightning runs last) saves.
    """

    def __init__(self, nonmono: int = 5, monitor: str = "val/loss"):
        self.nonmono = nonmono
        self.monitor = monitor
        self.history: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        # the best of all validations but the last `nonmono` ones (all of them when nonmono == 0)
        earlier = self.history[: len(self.history) - self.nonmono]
        if getattr(pl_module, "can_switch_to_asgd", False) and len(self.history) > self.nonmono and value > min(earlier):
            pl_module.switch_to_asgd()
        self.history.append(value)

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])


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

    @staticmethod
    def filename(minutes: float) -> str:
        return f"best_cpu{minutes:03g}min.ckpt"

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
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        for mark in passed:
            self.done.add(mark)
            if not best or not Path(best).is_file():
                log.warning("CPU mark %g min passed at step %d before any best checkpoint was saved: no %s",
                            mark, trainer.global_step, self.filename(mark))
                continue
            target = self.dirpath / self.filename(mark)
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

    def __init__(self, dirpath: str, filename: str = "initial.ckpt"):
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

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str, every_n_train_steps: int = 0):
        if every_n_train_steps < 0:
            raise ValueError(f"callbacks.last_checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.path = Path(dirpath) / self.FILENAME
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


def _duration(seconds: float) -> str:
    """12s, 4m05s, 2h03m: short enough for a log line, exact enough to plan by."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def batch_items(pl_module: pl.LightningModule, batch) -> tuple[int, str]:
    """How many items a batch holds and what they are: the task's ``progress_items(batch)`` when it
    has one (the LM counts tokens), else the length of the batch's first tensor or list."""
    counter = getattr(pl_module, "progress_items", None)
    if counter is not None:
        return counter(batch)
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else [batch]
    for value in values:
        if hasattr(value, "shape") and len(value.shape) > 0:
            return int(value.shape[0]), "items"
        if isinstance(value, (list, tuple)):
            return len(value), "items"
    return 1, "batches"


class ProgressLog(pl.Callback):
    """Progress lines in the run's log (Python ``logging``, which Hydra's job logging writes to
    ``<run>/train.log``; the console gets them too), so that a run can be followed, and judged
    afterwards, from its log alone:

    - during fit, every ``every_n_steps`` optimizer steps: step, epoch and batch, the training loss
      since the last line (and its perplexity when the items are tokens), the learning rate,
      items per second, the time used, and the time left to the nearest stopping limit
      (``trainer.max_steps``, ``max_epochs``, ``max_time``, or the CPU-time budget of
      :class:`CpuTimeBudget`), naming it;
    - after every validation inside fit: its metrics (``val/...``), how long it took, items per second;
    - during any evaluation (validation, test: the Marvin & Linzen suite, parsing, logic test
      files), at most every ``eval_every_seconds``: batches done of all, items per second, ETA; and
      at its end the items, time and rate.

    Rank zero only (under DDP the other ranks would repeat every line).
    """

    def __init__(self, every_n_steps: int = 50, eval_every_seconds: float = 30.0):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.progress_log.every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.eval_every_seconds = eval_every_seconds
        self._unit = "items"
        self._eval: dict = {}

    # ------------------------------------------------------------------ training
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.monotonic()
        self._start, self._start_step, self._start_cpu = now, trainer.global_step, time.process_time()
        self._window_time, self._window_items, self._losses = now, 0, []
        if trainer.is_global_zero:
            log.info("training from step %d: %s batches an epoch; stops at %s", trainer.global_step,
                     trainer.num_training_batches, self._limits(trainer) or "no limit")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        items, self._unit = batch_items(pl_module, batch)
        self._window_items += items
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss_step", metrics.get("train/loss"))
        if loss is not None:
            self._losses.append(float(loss))
        if trainer.global_step % self.every_n_steps == 0 and trainer.is_global_zero and self._window_items:
            self._log_training(trainer, batch_idx)

    def _log_training(self, trainer: pl.Trainer, batch_idx: int) -> None:
        now = time.monotonic()
        rate = self._window_items / max(now - self._window_time, 1e-9)
        parts = [f"step {trainer.global_step}", f"epoch {trainer.current_epoch} batch {batch_idx + 1}/{trainer.num_training_batches}"]
        if self._losses:
            loss = sum(self._losses) / len(self._losses)
            # a mean cross-entropy per token is a log-perplexity
            parts.append(f"loss {loss:.4f}" + (f" (ppl {math.exp(min(loss, 50.0)):.2f})" if self._unit == "tokens" else ""))
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.4g}")
        parts.append(f"{rate:,.0f} {self._unit}/s")
        parts.append(f"{_duration(now - self._start)} elapsed")
        eta = self._eta(trainer, now)
        parts.append(f"ETA {_duration(eta[0])} ({eta[1]})" if eta else "ETA unknown (no stopping limit)")
        log.info(" | ".join(parts))
        self._window_time, self._window_items, self._losses = now, 0, []

    @staticmethod
    def _limits(trainer: pl.Trainer) -> str:
        limits = []
        if trainer.max_steps and trainer.max_steps > 0:
            limits.append(f"max_steps={trainer.max_steps}")
        if trainer.max_epochs and trainer.max_epochs > 0:
            limits.append(f"max_epochs={trainer.max_epochs}")
        timer = next((c for c in trainer.callbacks if isinstance(c, pl.callbacks.Timer)), None)
        if timer is not None and timer._duration is not None:
            limits.append(f"max_time={_duration(timer._duration)}")
        budget = next((c for c in trainer.callbacks if isinstance(c, CpuTimeBudget)), None)
        if budget is not None:
            limits.append(f"CPU-time budget {budget.budget_seconds / 60:g} min")
        return ", ".join(limits)

    def _eta(self, trainer: pl.Trainer, now: float) -> tuple[float, str] | None:
        """Seconds to the nearest stopping limit at this attempt's pace (validations included), and its name."""
        elapsed = now - self._start
        steps = trainer.global_step - self._start_step
        if steps <= 0 or elapsed <= 0:
            return None
        per_step = elapsed / steps
        candidates = []
        if trainer.max_steps and trainer.max_steps > 0:
            candidates.append(((trainer.max_steps - trainer.global_step) * per_step, f"max_steps={trainer.max_steps}"))
        batches = trainer.num_training_batches
        if trainer.max_epochs and trainer.max_epochs > 0 and batches not in (None, float("inf")):
            done = trainer.current_epoch * batches + trainer.fit_loop.epoch_loop.batch_progress.current.completed + 1
            candidates.append(((trainer.max_epochs * batches - done) * per_step, f"max_epochs={trainer.max_epochs}"))
        timer = next((c for c in trainer.callbacks if isinstance(c, pl.callbacks.Timer)), None)
        if timer is not None and timer._duration is not None:
            candidates.append((timer.time_remaining("train"), f"max_time={_duration(timer._duration)}"))
        budget = next((c for c in trainer.callbacks if isinstance(c, CpuTimeBudget)), None)
        if budget is not None:
            # CPU seconds this process burns per wall second (about the thread count on an idle machine)
            cpu_per_wall = (time.process_time() - self._start_cpu) / elapsed
            left = budget.budget_seconds - budget.used_seconds()
            candidates.append((left / max(cpu_per_wall, 1e-9),
                               f"CPU-time budget: {budget.used_seconds() / 60:.1f} of {budget.budget_seconds / 60:g} min used"))
        return min(candidates, key=lambda c: c[0]) if candidates else None

    # ------------------------------------------------------------------ evaluations
    def _eval_start(self, trainer: pl.Trainer, stage: str, total) -> None:
        total = sum(total) if isinstance(total, list) else total
        self._eval = {"stage": stage, "start": time.monotonic(), "last": time.monotonic(), "batches": 0, "items": 0,
                      "total": total, "unit": "items"}

    def _eval_batch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch) -> None:
        if not self._eval or trainer.sanity_checking:
            return
        state = self._eval
        items, state["unit"] = batch_items(pl_module, batch)
        state["batches"] += 1
        state["items"] += items
        now = time.monotonic()
        if now - state["last"] < self.eval_every_seconds or not trainer.is_global_zero:
            return
        state["last"] = now
        elapsed = now - state["start"]
        rate = state["items"] / elapsed
        total = state["total"]
        if total and total != float("inf"):
            eta = elapsed / state["batches"] * (total - state["batches"])
            where = f"batch {state['batches']}/{int(total)} ({100 * state['batches'] / total:.0f}%)"
            log.info("%s: %s | %s %s/s | %s elapsed | ETA %s", state["stage"], where, f"{rate:,.1f}", state["unit"],
                     _duration(elapsed), _duration(eta))
        else:
            log.info("%s: batch %d | %s %s/s | %s elapsed", state["stage"], state["batches"], f"{rate:,.1f}",
                     state["unit"], _duration(elapsed))

    def _eval_end(self, trainer: pl.Trainer, prefix: str) -> None:
        state, self._eval = self._eval, {}
        if not state or not state["batches"] or not trainer.is_global_zero:
            return
        elapsed = max(time.monotonic() - state["start"], 1e-9)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix) and v.numel() == 1}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
        where = f" at step {trainer.global_step} (epoch {trainer.current_epoch})" if state["stage"] == "validation" else ""
        log.info("%s%s done: %s %s in %s (%s %s/s)%s", state["stage"], where, f"{state['items']:,}", state["unit"],
                 _duration(elapsed), f"{state['items'] / elapsed:,.1f}", state["unit"], f": {shown}" if shown else "")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._eval_start(trainer, "validation", trainer.num_val_batches)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch(trainer, pl_module, batch)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._eval_end(trainer, "val/")
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            # the validation's time is not training throughput: the next line's rate starts afresh
            self._window_time, self._window_items = time.monotonic(), 0

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start(trainer, "test", trainer.num_test_batches)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch(trainer, pl_module, batch)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_end(trainer, "test/")

"""The progress log: what a run is doing, in its ``train.log`` (:class:`ProgressLog`)."""

from __future__ import annotations

import logging
import math
import time

import pytorch_lightning as pl

from tasks.jobs.callbacks import CpuTimeBudget
from tasks.jobs.contract import TaskModule, count_items

log = logging.getLogger("onlstm.train")


def _duration(seconds: float) -> str:
    """12s, 4m05s, 2h03m: short enough for a log line, exact enough to plan by."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def batch_items(pl_module: pl.LightningModule, batch) -> tuple[int, str]:
    """How many items a batch holds and what they are: what the task says
    (:meth:`~tasks.jobs.contract.TaskModule.progress_items`; the LM counts tokens), else the
    length of the batch's first tensor or list."""
    if isinstance(pl_module, TaskModule):
        return pl_module.progress_items(batch)
    return count_items(batch)


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

"""Task-specific Lightning callbacks."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl

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


class SaveInitialWeights(pl.Callback):
    """Write the model as it is before its first update (``<dirpath>/initial.ckpt``, weights only):
    the untrained control of the parsing evidence reads its master gates. Skipped on resume."""

    def __init__(self, dirpath: str, filename: str = "initial.ckpt"):
        self.path = Path(dirpath) / filename

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is None and trainer.global_step == 0:
            trainer.save_checkpoint(self.path, weights_only=True)

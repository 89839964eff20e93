"""Callbacks that inject faults into real runs (used by the reliability tests through the config)."""

from __future__ import annotations

import os
import signal
import time

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """SIGKILL this process once ``step`` optimizer steps are done: no cleanup, like a lost node."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonLossAtStep(pl.Callback):
    """Make the LM's next batch produce a NaN loss once ``step`` steps are done."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            for param in pl_module.model.decoder.parameters():
                param.data.fill_(float("nan"))


class ForceASGDSwitch(pl.Callback):
    """Switch the LM task to averaged SGD after the first training epoch, whatever validation says."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0 and not pl_module.asgd_active:
            pl_module.switch_to_asgd()


class WaitForSignalAtStep(pl.Callback):
    """Once ``step`` optimizer steps are done, touch ``marker`` and wait (up to a minute) until a
    signal has reached the run (``LastCheckpoint.stopped_by``): the test sends a real signal from
    outside at a known point. ``during="validation"``: wait inside the validation after that step,
    after its first batch."""

    def __init__(self, step: int, marker: str, during: str = "train"):
        self.step, self.marker, self.during = step, marker, during

    def _wait(self, trainer) -> None:
        if trainer.global_step != self.step or trainer.sanity_checking:
            return
        open(self.marker, "w").close()
        deadline = time.time() + 60
        while time.time() < deadline and not any(getattr(c, "stopped_by", None) for c in trainer.callbacks):
            time.sleep(0.02)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.during == "train":
            self._wait(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.during == "validation" and batch_idx == 0:
            self._wait(trainer)


class SignalSelfAtStep(pl.Callback):
    """Send ``signum`` to this process once ``step`` optimizer steps are done (a real signal,
    delivered to the handlers as one from outside would be)."""

    def __init__(self, step: int, signum: int = int(signal.SIGTERM)):
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

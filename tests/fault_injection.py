"""Callbacks that inject faults into real runs (used by the reliability tests through the config)."""

from __future__ import annotations

import os
import signal

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

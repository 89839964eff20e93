"""Task-specific Lightning callbacks."""

from __future__ import annotations

import pytorch_lightning as pl


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

"""What the sequence-classification tasks share (``task=logic``, ``task=listops``): cross-entropy on
the classifier's logits, accuracy per stage (``train/acc``, ``val/acc``), the learning rate and
the best validation accuracy so far in the logs (``train/lr``, ``val/acc_best``: what the
checkpoint and the sweeps optimise), and the learning rate cut when validation accuracy stops
improving. A subclass says how a batch becomes logits (:meth:`ClassificationTask.logits`), builds
its optimiser and reports its test its own way."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from tasks.jobs.contract import TaskModule


def ungraphed(run: dict | None, task: str) -> dict:
    """The ``run`` options a classifier's encoder takes: ``run.cuda_graphs`` replays a language
    model's training steps, which a classifier has no path for; asked for, it is an error naming
    the key."""
    run = dict(run or {})
    if run.pop("cuda_graphs", False):
        raise ValueError(
            f"run.cuda_graphs=true replays a language model's training steps (task=lm); the {task} classifier "
            "has no graphed path: drop run.cuda_graphs=true"
        )
    return run


class ClassificationTask(TaskModule):
    def __init__(self, num_classes: int):
        super().__init__()
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()

    def logits(self, batch: dict[str, Any]) -> Tensor:
        """(batch, classes) logits of a batch; its labels are ``batch["label"]``."""
        raise NotImplementedError

    def _step(self, stage: str, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Loss and predictions of a batch; logs ``{stage}/loss`` and ``{stage}/acc`` (the metric
        object ``{stage}_acc`` accumulates over the epoch)."""
        logits = self.logits(batch)
        loss = F.cross_entropy(logits, batch["label"])
        preds = logits.argmax(-1)
        accuracy = getattr(self, f"{stage}_acc")
        accuracy.update(preds, batch["label"])
        size = batch["label"].numel()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, batch_size=size, prog_bar=on_step)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, batch_size=size, prog_bar=True)
        return loss, preds

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("train/lr", lr, on_step=False, on_epoch=True, batch_size=batch["label"].numel())
        return self._step("train", batch)[0]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step("val", batch)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best.update(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    @staticmethod
    def with_plateau_schedule(optimizer: torch.optim.Optimizer, factor: float, patience: int,
                              threshold: float = 1e-4) -> dict[str, Any]:
        """``configure_optimizers``' answer: ``optimizer``, its learning rate multiplied by ``factor``
        when ``val/acc`` has not improved (by more than ``threshold``, relative) for ``patience`` epochs."""
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=factor, patience=patience, threshold=threshold
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/acc", "interval": "epoch", "strict": False},
        }

"""What the classification tasks (logic, ListOps) share, run by a real Trainer on hand-set logits:
``val/acc`` over the whole validation set, ``val/acc_best`` the best of the real validations (not
the sanity check's), ``train/lr`` the learning rate of the epoch, halved on a validation plateau."""

from __future__ import annotations

import pytorch_lightning as pl
import pytest
import torch
from torch.utils.data import DataLoader

from tasks.classification import ClassificationTask

# Validation: five examples in batches of 2, 2 and 1. At epoch 0 the logits make the first three
# right (accuracy 3/5, where the mean of the batches' accuracies would be (1 + 1/2 + 0) / 3 = 1/2);
# from epoch 1 on, only the first two (2/5). The sanity check sees the first batch only: 2/2 right.
LABELS = [0, 1, 2, 0, 1]
EARLY = [0, 1, 2, 1, 2]  # the class each example's logits point to at epoch 0
LATE = [0, 1, 0, 1, 2]


def one_hot(classes: list[int]) -> torch.Tensor:
    return 10.0 * torch.nn.functional.one_hot(torch.tensor(classes), 3).float()


class HandSet(ClassificationTask):
    """Logits set by hand per example and epoch; a bias the optimiser moves (too little to change a
    prediction), so that there is something to train."""

    def __init__(self):
        super().__init__(num_classes=3)
        self.bias = torch.nn.Parameter(torch.zeros(3))

    def logits(self, batch):
        return (batch["early"] if self.current_epoch == 0 else batch["late"]) + self.bias

    def configure_optimizers(self):
        return self.with_plateau_schedule(torch.optim.SGD(self.parameters(), lr=0.01), factor=0.5, patience=0)


class Seen(pl.Callback):
    def __init__(self):
        self.validations, self.learning_rates = [], []

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self.validations.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    def on_train_epoch_end(self, trainer, module):
        self.learning_rates.append(float(trainer.callback_metrics["train/lr"]))


def test_validation_accuracy_its_best_and_the_learning_rate_per_epoch(tmp_path):
    data = [{"early": e, "late": t, "label": torch.tensor(y)} for e, t, y in zip(one_hot(EARLY), one_hot(LATE), LABELS)]
    loader = DataLoader(data, batch_size=2)
    seen = Seen()
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1,
                         callbacks=[seen], default_root_dir=tmp_path)
    trainer.fit(HandSet(), train_dataloaders=loader, val_dataloaders=loader)
    assert [v["val/acc"] for v in seen.validations] == pytest.approx([0.6, 0.4, 0.4])
    # the best of the real validations: not the sanity check's 1.0, not the last one
    assert [v["val/acc_best"] for v in seen.validations] == pytest.approx([0.6, 0.6, 0.6])
    # epoch 1's validation (0.4 after 0.6) is a plateau with patience 0: epoch 2 trains at half the rate
    assert seen.learning_rates == pytest.approx([0.01, 0.01, 0.005])
    # cross-entropy over the five examples: the two wrong ones cost about 10 each (4.0; the mean of the
    # batches' means would be 5.0); the bias trained for an epoch moves it by less than 0.01
    assert seen.validations[0]["val/loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(one_hot(EARLY), torch.tensor(LABELS))), abs=0.01)

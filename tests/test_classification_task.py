"""What the classification tasks (logic, ListOps) share, run by a real Trainer on hand-set logits:
``val/acc`` over the whole validation set, ``val/acc_best`` the best of the real validations (not
the sanity check's), ``train/lr`` the learning rate of the epoch, halved on a validation plateau."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytorch_lightning as pl
import pytest
import torch
from torch.utils.data import DataLoader

from tasks.classification import ClassificationTask, ungraphed

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


# ----------------------------------------------------------------------------- one step, by hand
class FromBatch(ClassificationTask):
    """Logits read from the batch: what _step and training_step do with them, without a model."""

    def __init__(self):
        super().__init__(num_classes=3)

    def logits(self, batch):
        return batch["logits"]


def hand_batch() -> dict[str, torch.Tensor]:
    """Three examples whose softmax is (1/4, 1/4, 1/2) rotated: predictions 2, 0, 1 for labels
    2, 1, 1 (two right); cross-entropy ln 2, ln 4, ln 2, mean 4 ln 2 / 3. The classes are
    unbalanced, so that micro accuracy (2/3) is not the macro one (the mean of the per-class rates).
    ``tokens`` comes first and is time-major (7, 3), as a logic or ListOps batch's first tensor is:
    a size Lightning would guess from it is 7, not 3."""
    logits = torch.log(torch.tensor([[1.0, 1.0, 2.0], [2.0, 1.0, 1.0], [1.0, 2.0, 1.0]]))
    return {"tokens": torch.zeros(7, 3, dtype=torch.long), "logits": logits, "label": torch.tensor([2, 1, 1])}


def recording(module: ClassificationTask) -> list[tuple]:
    calls = []
    module.log = lambda name, value, **kwargs: calls.append((name, value, kwargs))
    return calls


@pytest.mark.parametrize("stage", ["train", "val"])
def test_a_step_logs_its_loss_and_accuracy_over_the_examples(stage):
    """``{stage}/loss`` (the mean cross-entropy, weighted by the examples in the batch: batch_size
    is the label count, not the first tensor's length) per step only in training, where it is also
    on the progress bar; ``{stage}/acc`` the stage's own micro-averaged accuracy metric, per epoch
    and on the progress bar (breaks seen failing: on_step = stage != "train", batch_size dropped,
    average="micro" dropped from the train_acc metric, prog_bar=True -> False)."""
    module = FromBatch()
    calls = recording(module)
    loss, preds = module._step(stage, hand_batch())
    assert float(loss) == pytest.approx(4 * math.log(2) / 3)
    assert preds.tolist() == [2, 0, 1]
    training = stage == "train"
    ((loss_name, loss_value, loss_kwargs), (acc_name, acc_value, acc_kwargs)) = calls
    assert (loss_name, loss_value, loss_kwargs) == (
        f"{stage}/loss", loss, {"on_step": training, "on_epoch": True, "batch_size": 3, "prog_bar": training})
    metric = getattr(module, f"{stage}_acc")
    assert acc_value is metric  # the metric object: Lightning computes it over the whole epoch
    assert (acc_name, acc_kwargs) == (f"{stage}/acc", {"on_step": False, "on_epoch": True, "batch_size": 3, "prog_bar": True})
    assert float(metric.compute()) == pytest.approx(2 / 3)  # micro: 2 of 3 examples (macro would not be 2/3)
    other = module.val_acc if training else module.train_acc
    assert not other.update_called  # the other stage's accuracy saw nothing


def test_a_training_step_logs_the_learning_rate_per_epoch_and_returns_the_loss():
    """``train/lr`` is the first optimiser's first parameter group's rate (the one the plateau
    schedule cuts), an epoch value weighted by the batch's examples; the step returns the loss to
    optimise (breaks seen failing: optimizers[0] -> [1], param_groups[0] -> [1], on_step=False ->
    True, training_step returning _step(...)[1], the predictions)."""
    module = FromBatch()
    calls = recording(module)
    first = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.25},
                             {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5}])
    second = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.75)
    module._trainer = SimpleNamespace(optimizers=[first, second])  # only the optimisers are read
    loss = module.training_step(hand_batch(), 0)
    assert float(loss) == pytest.approx(4 * math.log(2) / 3)
    assert calls[0] == ("train/lr", 0.25, {"on_step": False, "on_epoch": True, "batch_size": 3})
    assert [name for name, _, _ in calls[1:]] == ["train/loss", "train/acc"]


def test_the_plateau_schedule_is_lightnings_config_and_cuts_after_a_relative_threshold():
    """What configure_optimizers hands Lightning: the optimiser, and ReduceLROnPlateau stepped every
    epoch on ``val/acc`` (maximised), not strict, so that a run without a validation that epoch
    still trains (breaks seen failing: "val/acc" -> "XXval/accXX", strict False -> True,
    threshold 1e-4 -> 1.0001, threshold not handed to the scheduler)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    config = ClassificationTask.with_plateau_schedule(optimizer, factor=0.5, patience=0)
    scheduler = config["lr_scheduler"]["scheduler"]
    assert config == {"optimizer": optimizer,
                      "lr_scheduler": {"scheduler": scheduler, "monitor": "val/acc", "interval": "epoch", "strict": False}}
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and scheduler.optimizer is optimizer
    # patience 0: the first epoch without an improvement halves the rate. An improvement is more
    # than 1e-4 relative: 0.60009 > 0.6 * 1.0001 = 0.60006 is one, 0.6001 < 0.60009 * 1.0001 is not
    rates = []
    for accuracy in (0.5, 0.6, 0.60009, 0.6001):
        scheduler.step(accuracy)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [1.0, 1.0, 1.0, 0.5]
    # a threshold given is the one used: 1.4 is not 50% better than 1.0
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = ClassificationTask.with_plateau_schedule(optimizer, 0.5, 0, threshold=0.5)["lr_scheduler"]["scheduler"]
    for accuracy in (1.0, 1.4):
        scheduler.step(accuracy)
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_a_classifier_takes_the_run_options_but_refuses_cuda_graphs_naming_the_key():
    """``ungraphed``: the encoder gets the run options less ``cuda_graphs`` (false or absent), the
    caller's dict untouched; ``run.cuda_graphs=true`` is an error naming the task and what to drop
    (breaks seen failing: ``run or {}`` -> ``run and {}``, pop's default False -> True, the key
    misspelt, the message's second half changed)."""
    options = {"implementation": "reference", "cuda_graphs": False}
    assert ungraphed(options, "logic") == {"implementation": "reference"}
    assert options == {"implementation": "reference", "cuda_graphs": False}
    assert ungraphed({"implementation": "fused"}, "logic") == {"implementation": "fused"}
    assert ungraphed(None, "logic") == {}
    with pytest.raises(ValueError) as info:
        ungraphed({"implementation": "fused", "cuda_graphs": True}, "listops")
    assert str(info.value) == ("run.cuda_graphs=true replays a language model's training steps (task=lm); the listops "
                               "classifier has no graphed path: drop run.cuda_graphs=true")

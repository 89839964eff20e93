"""What the run machinery needs of a task's LightningModule beyond Lightning's hooks (the module half
of the task contract; the data half is :class:`datamodules.contract.TaskDataModule`).

The runner builds a task from its config: the datamodule (``task.datamodule``), then the module
(``task.module``) with the backbone config, the run options and the datamodule's
``module_kwargs()``; when the module brings a vocabulary (:attr:`TaskModule.vocab`, a trained
LM's) the datamodule encodes its data with it (``use_vocabulary``). The progress log counts what
:meth:`TaskModule.progress_items` says a batch holds. ``eval.py ckpt_path=<model folder>`` (an
exported language model) builds the module with :meth:`TaskModule.from_language_model`. A
module's running bests over validations (``val/acc_best``, ``val/ppl_best``) travel in its
checkpoints (:meth:`TaskModule.running_bests`).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics import MaxMetric, MinMetric

from onlstm.checkpoints import LoadedLM

#: the checkpoint key of the running bests: {attribute name: best value so far}
RUNNING_BESTS_KEY = "running_bests"


def count_items(batch: Any) -> tuple[int, str]:
    """The length of a batch's first tensor or list ("items"); 1 "batches" when it has none."""
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else [batch]
    for value in values:
        if hasattr(value, "shape") and len(value.shape) > 0:
            return int(value.shape[0]), "items"
        if isinstance(value, (list, tuple)):
            return len(value), "items"
    return 1, "batches"


class TaskModule(pl.LightningModule):
    """Base of every task's LightningModule (the ``_target_`` of a ``conf/task/*.yaml``'s module)."""

    #: the words the model reads, when the model brings them (a language model, or a task that
    #: loads one); None when the data fixes the symbols
    vocab: list[str] | None = None

    @classmethod
    def from_language_model(cls, loaded: LoadedLM, run: dict, **data: Any) -> TaskModule:
        """The module that evaluates ``loaded``, a trained language model with its weights (from an
        exported model folder); ``run``: the run options, ``data``: the datamodule's
        ``module_kwargs()``. NotImplementedError for a task whose model is no language model."""
        raise NotImplementedError(f"{cls.__name__} is not built from a language model")

    def running_bests(self) -> dict[str, MaxMetric | MinMetric]:
        """The module's running bests over validations, by attribute name. torchmetrics keeps a
        metric's state out of the state_dict, so without :meth:`on_save_checkpoint` a resumed run
        would forget the validations before the stop and log a worse later one as its best."""
        return {name: m for name, m in self.named_children() if isinstance(m, (MaxMetric, MinMetric))}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUNNING_BESTS_KEY] = {name: float(m.compute()) for name, m in self.running_bests().items()
                                         if m.update_count}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bests = self.running_bests()
        for name, value in checkpoint.get(RUNNING_BESTS_KEY, {}).items():  # none in checkpoints written before them
            if name in bests:
                bests[name].reset()
                bests[name].update(torch.tensor(value, device=self.device))

    def progress_items(self, batch: Any) -> tuple[int, str]:
        """How many items ``batch`` holds and what they are, for the progress log's rates
        ("tokens", "sentences", "pairs"); by default the length of its first tensor, "items"."""
        return count_items(batch)

"""The contract between the run machinery and a task (tasks/jobs/contract.py, datamodules/contract.py):
every task config names a module that is a TaskModule and a datamodule that is a TaskDataModule,
each task says what its batches hold, and the runner hands a vocabulary to the data only when
the model brings one."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import get_class

from datamodules.contract import TaskDataModule
from tasks.jobs.contract import TaskModule, count_items
from tasks.jobs.progress_log import batch_items
from tasks.jobs.task_from_config import connect
from tests.helpers import ROOT

TASKS = sorted(p.stem for p in (ROOT / "conf" / "task").glob("*.yaml"))
# one batch of each task, as its datamodule makes it, and what the progress log should count
BATCHES = {
    "lm": ({"input": torch.zeros(35, 4, dtype=torch.long), "target": torch.zeros(35, 4, dtype=torch.long)},
           (140, "tokens")),
    "logic": ({"premise": torch.zeros(9, 3, dtype=torch.long), "label": torch.zeros(3, dtype=torch.long)}, (3, "pairs")),
    "listops": ({"tokens": torch.zeros(12, 5, dtype=torch.long), "label": torch.zeros(5, dtype=torch.long)},
                (5, "expressions")),
    "parsing": ({"index": [4, 7], "ids": [[0, 5, 0], [0, 6, 7, 0]]}, (2, "sentences")),
    "syneval": ({"sentence": torch.tensor([1, 2, 3, 4, 5]), "tokens": torch.zeros(8, 5, dtype=torch.long)},
                (5, "sentences")),
}


def test_every_task_config_is_covered():
    assert TASKS == sorted(BATCHES)


@pytest.mark.parametrize("task", TASKS)
def test_each_task_implements_the_contract_and_counts_its_own_items(make_cfg, task):
    cfg = make_cfg([f"task={task}"], config_name="eval")
    module, datamodule = get_class(cfg.task.module._target_), get_class(cfg.task.datamodule._target_)
    assert issubclass(module, TaskModule) and issubclass(datamodule, TaskDataModule)
    batch, expected = BATCHES[task]
    # progress_items reads only the batch: called on the class, no model needed
    assert module.progress_items(None, batch) == expected


def test_a_plain_lightning_module_is_counted_by_its_first_tensor():
    import pytorch_lightning as pl

    assert batch_items(pl.LightningModule(), {"x": torch.zeros(6, 2), "y": [1, 2]}) == (6, "items")
    assert count_items([[1, 2, 3]]) == (3, "items") and count_items({}) == (1, "batches")


class RecordingData(TaskDataModule):
    def __init__(self):
        super().__init__()
        self.handed: list = []

    def use_vocabulary(self, words) -> None:
        self.handed.append(list(words))


def test_the_vocabulary_goes_to_the_data_only_when_the_model_brings_one():
    data = RecordingData()
    connect(data, TaskModule())  # logic: the data fixes the symbols
    assert data.handed == []
    module = TaskModule()
    module.vocab = ["<eos>", "<unk>", "cat"]
    assert connect(data, module) is module
    assert data.handed == [["<eos>", "<unk>", "cat"]]
    assert TaskDataModule().module_kwargs() == {}

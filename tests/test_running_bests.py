"""A resumed run's running best over validations (``val/acc_best``, ``val/ppl_best``) counts the
validations before the stop: the evidence report and the logs read it as the run's best validation."""

from __future__ import annotations

import io

import pytest
import pytorch_lightning as pl
import torch

from tasks.jobs.contract import RUNNING_BESTS_KEY
from tasks.language_modeling import LanguageModelingTask
from tasks.listops import ListOpsTask
from tasks.logical_inference import LogicalInferenceTask

MODEL = {"emb_size": 4, "hidden_size": 8, "n_layers": 1, "chunk_size": 2, "dropout": 0.0, "dropouth": 0.0,
         "dropouti": 0.0, "dropoute": 0.0, "wdrop": 0.0}


def _lm():
    return LanguageModelingTask(model=MODEL, vocab=["a", "b", "c", "d", "<eos>"])


def _logic():
    return LogicalInferenceTask(model=MODEL, vocab_size=12, relations=["=", "<", ">", "|", "^", "v", "#"],
                                train_ops=[1, 2], test_ops=[3, 4], mlp_hidden=4)


def _listops():
    return ListOpsTask(model=MODEL, vocab_size=20, num_classes=10, sources=["train", "valid", "released"],
                       test_sources=["released"], length_buckets=["1-100", "101-200"], train_max_length=100)


def _through_a_file(checkpoint: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # how Lightning's resume reads it


@pytest.mark.parametrize(("make", "name", "before", "after", "best"), [
    (_logic, "val_acc_best", [0.70, 0.65], 0.60, 0.70),      # accuracy: the largest
    (_listops, "val_acc_best", [0.62, 0.629], 0.6195, 0.629),
    (_lm, "val_ppl_best", [150.0, 120.0], 130.0, 120.0),     # perplexity: the smallest
])
def test_the_best_before_a_resume_stays_the_best_after_it(make, name, before, after, best):
    module = make()
    for value in before:  # the validations before the stop
        getattr(module, name).update(torch.tensor(value))
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    resumed = make()
    resumed.trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)  # as in a resume
    resumed.on_load_checkpoint(_through_a_file(checkpoint))
    getattr(resumed, name).update(torch.tensor(after))  # a worse validation after the resume
    assert float(getattr(resumed, name).compute()) == pytest.approx(best)


def test_a_checkpoint_from_before_any_validation_or_before_running_bests_were_kept_starts_afresh():
    module = _logic()
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint[RUNNING_BESTS_KEY] == {}  # nothing validated yet: no best to keep (not -inf)
    resumed = _logic()
    resumed.on_load_checkpoint({})  # a checkpoint written before the key existed
    resumed.val_acc_best.update(torch.tensor(0.4))
    assert float(resumed.val_acc_best.compute()) == pytest.approx(0.4)

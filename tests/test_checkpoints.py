"""onlstm.checkpoints on hand-made checkpoint files: what a checkpoint says the model is."""

from __future__ import annotations

import pytest
import torch

from onlstm.checkpoints import CheckpointError, check_checkpoint_path, load_language_model, stored_model_backbone

# what a checkpoint of an older version stored: the backbone with two run options among its fields
LEGACY = {"hidden_size": 12, "chunk_size": 4, "implementation": "reference", "cuda_graphs": False}


def test_a_checkpoint_files_backbone_leaves_the_old_run_options_out(tmp_path):
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": {"model": dict(LEGACY)}, "state_dict": {}}, path)
    assert stored_model_backbone(path) == {"hidden_size": 12, "chunk_size": 4}


def test_a_checkpoint_already_read_is_not_read_again(tmp_path):
    """The evaluation entry reads a checkpoint once and hands its contents over."""
    checkpoint = {"hyper_parameters": {"model": dict(LEGACY)}}
    assert stored_model_backbone(tmp_path / "not_there.ckpt", checkpoint) == {"hidden_size": 12, "chunk_size": 4}
    assert checkpoint["hyper_parameters"]["model"] == LEGACY  # the contents handed over stay as they were


def test_a_checkpoint_without_a_backbone_is_not_one_of_this_project(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError) as info:
        stored_model_backbone(path)
    assert str(info.value) == f"{path}: not a checkpoint of this project (no hyper_parameters.model)"


def test_a_checkpoint_without_a_vocabulary_is_no_language_model_and_the_error_names_it(tmp_path):
    path = tmp_path / "logic.ckpt"  # a checkpoint of another task: a backbone, weights, no vocabulary
    torch.save({"hyper_parameters": {"model": dict(LEGACY)}, "state_dict": {}}, path)
    with pytest.raises(CheckpointError) as info:
        load_language_model(path)
    assert str(info.value) == (f"{path}: not a language-model checkpoint of this project (no 'vocab'): "
                               "give a checkpoint written by task=lm")


def test_lightnings_own_checkpoint_names_pass_the_path_check_untouched():
    """ckpt_path=best / last name the Trainer's own checkpoints (test=true after a fit): no file to check."""
    assert [check_checkpoint_path(name) for name in (None, "best", "last")] == [None, "best", "last"]

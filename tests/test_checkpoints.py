"""onlstm.checkpoints on hand-made checkpoint files: what a checkpoint says the model is."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from onlstm.checkpoints import (CheckpointError, check_checkpoint_path, load_language_model, read_checkpoint,
                                stored_model_backbone)
from tests.helpers import TouchPayload

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


def saved_on_a_gpu(path: Path, tensors: dict) -> Path:
    """``tensors`` saved as a GPU run saves them: the file records each storage's device as
    ``cuda`` (torch.save writes the location into the pickle; here it is rewritten, so that no GPU
    is needed to make the file)."""
    torch.save(tensors, path.with_suffix(".cpu"))
    with zipfile.ZipFile(path.with_suffix(".cpu")) as src, zipfile.ZipFile(path, "w") as dst:
        for entry in src.infolist():
            data = src.read(entry)
            if entry.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x04\x00\x00\x00cuda")
            dst.writestr(entry, data)
    return path


def test_a_checkpoint_written_on_a_gpu_is_read_onto_the_cpu(tmp_path):
    """A model trained on a GPU is parsed and evaluated on a laptop: its tensors come back on the
    CPU, not on a device this machine may not have."""
    path = saved_on_a_gpu(tmp_path / "gpu.ckpt", {"w": torch.tensor([0.5, -1.0])})
    loaded = read_checkpoint(path)
    assert loaded["w"].device.type == "cpu"
    assert loaded["w"].tolist() == [0.5, -1.0]


def test_pickled_code_is_refused_even_where_the_environment_turns_torchs_safe_loading_off(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD makes torch.load unpickle anything unless the caller asks for
    weights only: reading a checkpoint asks, so its code still never runs."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": TouchPayload(marker)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert not marker.exists()
    message = str(info.value)  # what is wrong, torch's own reason in brackets, and what to do
    assert message.startswith(f"{path}: refused to load: it holds more than tensors and plain containers (")
    assert message.endswith("). Only load checkpoints you trust, and only ones written by this project.")

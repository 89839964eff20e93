"""Loading a trained language model from a Lightning checkpoint, safely.

``torch.load(..., weights_only=True)`` only unpickles tensors and plain containers: a checkpoint
carrying a pickled object (code) is refused, unlike the official code's whole-model pickles.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch

from onlstm import BackboneConfig, RNNLanguageModel


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


class LoadedLM(NamedTuple):
    model: RNNLanguageModel
    vocab: list[str]
    config: BackboneConfig


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; set ckpt_path to a .ckpt file written by task=lm")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: it holds more than tensors and plain containers ({err}). "
            "Only load checkpoints you trust, and only ones written by this project."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {err}") from None


def load_language_model(path: str | Path) -> LoadedLM:
    """The LM (in eval mode, on the CPU), its vocabulary and backbone config from a task=lm checkpoint."""
    checkpoint = read_checkpoint(path)
    try:
        model_cfg = BackboneConfig(**checkpoint["hyper_parameters"]["model"])
        vocab = list(checkpoint["vocab"])
        state = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not a language-model checkpoint of this project (missing {err})") from None
    model = RNNLanguageModel(len(vocab), model_cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model the checkpoint describes: {err}") from None
    model.eval()
    return LoadedLM(model, vocab, model_cfg)

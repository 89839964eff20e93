"""Reading this project's checkpoints safely: a checkpoint file, the backbone it stores, a trained
language model with its vocabulary, from a checkpoint or from an exported model folder.

A checkpoint is what the tasks' Lightning Trainer saves: a plain dict whose ``hyper_parameters``
hold the backbone (``model``: what the model is, never how it ran), whose ``state_dict`` holds the
weights (the LM's under ``model.``) and, for a language model, ``vocab``. Reading one needs torch
only, so the offline tools (``onlstm-parse``) and the run machinery share this module.
``torch.load(..., weights_only=True)`` only unpickles tensors and plain containers: a checkpoint
carrying a pickled object (code) is refused, unlike the official code's whole-model pickles.

Wherever a trained language model is asked for (``eval.py task=parsing|syneval|lm``,
``onlstm-parse``), a model folder that ``onlstm-export`` / ``RNNLanguageModel.save_pretrained``
wrote serves as well as the checkpoint it came from: :func:`is_model_folder` is the one test that
tells them apart, :func:`load_language_model` and :func:`stored_model_backbone` read either. A bad
folder is an :class:`onlstm.pretrained.PretrainedFolderError` naming the file (:data:`LOAD_ERRORS`).
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch

from onlstm import pretrained
from onlstm.lm import BackboneConfig, RNNLanguageModel


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


# what reading a trained model (a checkpoint file or a model folder) raises on bad input
LOAD_ERRORS = (CheckpointError, pretrained.PretrainedFolderError)


# Fields that checkpoints written before the run options left the model config (``run.*``, see
# tasks/jobs/schemas/run.py) still carry in hyper_parameters["model"]: how that run ran, not what the
# model is. Dropped on loading, so that those checkpoints load as the new ones do.
LEGACY_RUN_FIELDS = ("implementation", "cuda_graphs")


class LoadedLM(NamedTuple):
    model: RNNLanguageModel
    vocab: list[str]
    config: BackboneConfig


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` names an exported model folder (config.json, model.safetensors, vocab.txt:
    :mod:`onlstm.pretrained`) rather than a checkpoint file: any folder counts, so that a folder
    with a file missing is reported as such by the folder's checks."""
    return Path(path).is_dir()


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; give a .ckpt file (e.g. <run>/checkpoints/last.ckpt)")
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


def check_checkpoint_path(path: str | None) -> str | None:
    """A usable checkpoint path or None; a missing, truncated or unsafe file fails here, clearly.
    ``best`` and ``last`` (Lightning's names for a Trainer's own checkpoints) pass as they are."""
    if path is None or path in ("best", "last"):
        return path
    if is_model_folder(path):
        raise CheckpointError(
            f"ckpt_path={path} is a folder: training continues from a checkpoint file (<run>/checkpoints/last.ckpt); "
            "an exported model folder is evaluated (eval.py) or parsed with (onlstm-parse), not trained on"
        )
    if not Path(path).is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist; give the path of a .ckpt file")
    read_checkpoint(path)  # raises CheckpointError naming the file (truncated, corrupt, pickled code)
    return path


def stored_backbone(checkpoint: dict) -> dict:
    """The backbone fields a checkpoint stores (``hyper_parameters["model"]``), without the
    execution fields older checkpoints kept there (:data:`LEGACY_RUN_FIELDS`). KeyError/TypeError
    when the checkpoint has none."""
    stored = dict(checkpoint["hyper_parameters"]["model"])
    for name in LEGACY_RUN_FIELDS:
        stored.pop(name, None)
    return stored


def stored_model_backbone(path: str | Path, checkpoint: dict | None = None) -> dict:
    """The backbone fields (what the model is) of a checkpoint file (``checkpoint``: its contents,
    when already read) or of a model folder's config.json."""
    if is_model_folder(path):
        files = pretrained.locate_files(path)
        _, cfg = pretrained.read_config(files[pretrained.CONFIG_FILE], BackboneConfig)
        return dataclasses.asdict(cfg)
    try:
        return stored_backbone(read_checkpoint(path) if checkpoint is None else checkpoint)
    except (KeyError, TypeError):
        raise CheckpointError(f"{path}: not a checkpoint of this project (no hyper_parameters.model)") from None


def load_language_model(path: str | Path, run: dict | None = None) -> LoadedLM:
    """The LM (in eval mode, on the CPU), its vocabulary and backbone config from a task=lm
    checkpoint or from a model folder (:func:`is_model_folder`).

    ``run``: how the model runs (``RNNLanguageModel``'s ``implementation``, ``cuda_graphs``; the
    ``run`` config), chosen by the caller: the checkpoint says what the model is, not how it ran."""
    if is_model_folder(path):
        model = RNNLanguageModel.from_pretrained(path, **(run or {}))
        return LoadedLM(model, list(model.vocab), model.cfg)
    return language_model_of(read_checkpoint(path), path, run)


def language_model_of(checkpoint: dict, path: str | Path, run: dict | None = None) -> LoadedLM:
    """:func:`load_language_model` of a checkpoint already read (``path``: where, for the messages)."""
    try:
        model_cfg = BackboneConfig(**stored_backbone(checkpoint))
        vocab = list(checkpoint["vocab"])
        state = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    except (KeyError, TypeError) as err:
        raise CheckpointError(
            f"{path}: not a language-model checkpoint of this project (no {err}): give a checkpoint written by task=lm"
        ) from None
    model = RNNLanguageModel(len(vocab), model_cfg, **(run or {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model the checkpoint describes: {err}") from None
    model.eval()
    return LoadedLM(model, vocab, model_cfg)

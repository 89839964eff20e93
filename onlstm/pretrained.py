"""The folder a trained language model travels in, without this checkout, Lightning or pickles.

    config.json        {"format_version": 1, "vocab_size": N, <every field of the backbone config>}
    model.safetensors  the weights: tensors only, no code (safetensors); a tensor two parameters
                       share (the tied decoder weight) is stored once
    vocab.txt          the vocabulary, UTF-8, one word per line: line k holds the word of id k - 1
    README.md          the model card (:mod:`onlstm.model_card`)

What the model *is* goes in; how it ran (the recurrence's implementation, CUDA graphs) does not:
the loader chooses that. :class:`onlstm.lm.RNNLanguageModel` writes and reads such folders
(``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``, through huggingface_hub's
``PyTorchModelHubMixin``); this module holds the format, its checks and their messages, and knows
no model class: the backbone config is any dataclass with a ``validate()`` method.

Every problem with a folder is a :class:`PretrainedFolderError` (a ValueError) naming the file,
what is wrong, and what to do.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import constants
from torch import nn

FORMAT_VERSION = 1  # raise when a file of the folder changes meaning; readers refuse newer folders
CONFIG_FILE = constants.CONFIG_NAME  # "config.json": the names huggingface_hub's mixin and the Hub expect
WEIGHTS_FILE = constants.SAFETENSORS_SINGLE_FILE  # "model.safetensors"
VOCAB_FILE = "vocab.txt"
CARD_FILE = "README.md"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE)
# how a model runs: arguments of the loader, never part of the folder
RUN_FIELDS = ("implementation", "cuda_graphs")
REEXPORT = "export the model again (RNNLanguageModel.save_pretrained or onlstm-export)"


class PretrainedFolderError(ValueError):
    """A model folder (or Hub repository) that cannot be loaded; the message names the file."""


# ----------------------------------------------------------------------------- finding the files
def locate_files(model_id: str | Path, **download: Any) -> dict[str, Path]:
    """Local paths of the required files of a model folder, or of a Hub repository ``user/name``
    (downloaded into huggingface_hub's cache; ``download``: ``hf_hub_download``'s ``revision``,
    ``cache_dir``, ``force_download``, ``local_files_only``, ``token``)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
        if missing:
            raise PretrainedFolderError(
                f"{path}: no {', no '.join(missing)} in the folder; a model folder holds {', '.join(REQUIRED_FILES)} "
                f"(and {CARD_FILE}): {REEXPORT}"
            )
        return {name: path / name for name in REQUIRED_FILES}
    if path.exists():
        raise PretrainedFolderError(f"{path} is a file; give the folder that save_pretrained / onlstm-export wrote")
    if not _is_repo_id(str(model_id)):
        raise PretrainedFolderError(
            f"{model_id}: no such folder (and not a Hub repository id such as 'user/model'); "
            "give the folder that save_pretrained / onlstm-export wrote"
        )
    return _download(str(model_id), download)


def _is_repo_id(text: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _download(repo_id: str, download: dict[str, Any]) -> dict[str, Path]:
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    files = {}
    for name in REQUIRED_FILES:
        try:
            files[name] = Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=name, **download))
        except LocalEntryNotFoundError:
            raise  # offline and not cached: huggingface_hub's message says so
        except EntryNotFoundError:
            raise PretrainedFolderError(
                f"Hub repository {repo_id}: no {name}; a model repository holds {', '.join(REQUIRED_FILES)}: "
                f"push it again with push_to_hub"
            ) from None
    return files


# ----------------------------------------------------------------------------- config.json
def config_record(vocab_size: int, cfg: Any) -> dict[str, Any]:
    """What config.json holds: the format version, the vocabulary size and every field of ``cfg``."""
    return {"format_version": FORMAT_VERSION, "vocab_size": vocab_size, **dataclasses.asdict(cfg)}


def write_config(path: Path, vocab_size: int, cfg: Any) -> None:
    path.write_text(json.dumps(config_record(vocab_size, cfg), indent=2) + "\n", encoding="utf-8")


def read_config(path: Path, config_class: type) -> tuple[int, Any]:
    """(vocab_size, ``config_class`` instance) from config.json: every field present, none unknown,
    each of its declared type, and the config valid (``validate()``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise PretrainedFolderError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); {REEXPORT}") from None
    except json.JSONDecodeError as err:
        raise PretrainedFolderError(f"{path}: not JSON (line {err.lineno}, column {err.colno}: {err.msg}); {REEXPORT}") from None
    if not isinstance(data, dict):
        raise PretrainedFolderError(f"{path}: expected a JSON object of config fields, found {type(data).__name__}; {REEXPORT}")
    data = dict(data)
    version = data.pop("format_version", None)
    if version is None:
        raise PretrainedFolderError(
            f"{path}: no format_version: not a folder written by RNNLanguageModel.save_pretrained; {REEXPORT}"
        )
    if not _is_int(version) or version < 1:
        raise PretrainedFolderError(f"{path}: format_version must be a positive integer, got {version!r}; {REEXPORT}")
    if version > FORMAT_VERSION:
        raise PretrainedFolderError(
            f"{path}: format_version {version} is newer than this onlstm reads ({FORMAT_VERSION}): upgrade onlstm"
        )
    vocab_size = data.pop("vocab_size", None)
    if not _is_int(vocab_size) or vocab_size < 1:
        raise PretrainedFolderError(f"{path}: vocab_size must be a positive integer, got {vocab_size!r}; {REEXPORT}")

    names = [f.name for f in dataclasses.fields(config_class)]
    run_fields = sorted(set(data) & set(RUN_FIELDS))
    if run_fields:
        raise PretrainedFolderError(
            f"{path}: {', '.join(run_fields)} say(s) how a model runs, which a model folder does not store: remove "
            f"the key and pass it to from_pretrained instead (e.g. from_pretrained(folder, {run_fields[0]}=...))"
        )
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise PretrainedFolderError(f"{path}: unknown field(s) {', '.join(unknown)}; the fields are {', '.join(names)}")
    missing = [name for name in names if name not in data]
    if missing:
        raise PretrainedFolderError(f"{path}: missing field(s) {', '.join(missing)}; {REEXPORT}")
    hints = typing.get_type_hints(config_class)
    for name in names:
        data[name] = _typed(path, name, data[name], hints[name])
    cfg = config_class(**data)
    try:
        cfg.validate()
    except ValueError as err:
        raise PretrainedFolderError(f"{path}: {err}") from None
    return vocab_size, cfg


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _typed(path: Path, name: str, value: Any, kind: type) -> Any:
    """``value`` as a ``kind`` (bool, int, float or str) when JSON gave a value of that kind
    (an integer for a float field included); else the error naming the field."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and _is_int(value):
        return value
    if kind is float and (_is_int(value) or isinstance(value, float)):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    article = "an" if kind is int else "a"
    raise PretrainedFolderError(f"{path}: field {name} must be {article} {kind.__name__}, got {value!r}")


# ----------------------------------------------------------------------------- vocab.txt
def check_vocab(vocab: Sequence[str], vocab_size: int) -> None:
    """ValueError unless ``vocab`` can be written one word per line and read back as it is: as many
    words as the model has ids, each a non-empty string without line breaks, no word twice."""
    if len(vocab) != vocab_size:
        raise ValueError(f"the vocabulary has {len(vocab)} words, the model {vocab_size} ids: give the model's own vocabulary")
    seen: dict[str, int] = {}
    for i, word in enumerate(vocab):
        if not isinstance(word, str) or not word or "\n" in word or "\r" in word:
            raise ValueError(f"vocabulary word {i} is {word!r}: a word is a non-empty string without line breaks")
        if word in seen:
            raise ValueError(f"vocabulary words {seen[word]} and {i} are both {word!r}: each id needs its own word")
        seen[word] = i


def write_vocab(path: Path, vocab: Sequence[str]) -> None:
    path.write_text("".join(word + "\n" for word in vocab), encoding="utf-8")


def read_vocab(path: Path, vocab_size: int) -> list[str]:
    """The words of vocab.txt, which must be ``vocab_size`` distinct non-empty lines."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise PretrainedFolderError(f"{path}:{line}: not UTF-8 text ({err.reason}); {REEXPORT}") from None
    if "\r" in text:
        raise PretrainedFolderError(f"{path}: Windows line endings (\\r); one word per line with \\n endings; {REEXPORT}")
    words = text.split("\n")
    if words and words[-1] == "":
        words.pop()  # the last line's newline
    seen: dict[str, int] = {}
    for line, word in enumerate(words, start=1):
        if not word:
            raise PretrainedFolderError(f"{path}:{line}: empty line; the file holds one word per line; {REEXPORT}")
        if word in seen:
            raise PretrainedFolderError(f"{path}:{line}: {word!r} again (first on line {seen[word]}); each id needs its own word")
        seen[word] = line
    if len(words) != vocab_size:
        raise PretrainedFolderError(
            f"{path}: {len(words)} words, but config.json says vocab_size={vocab_size}: the two files come from "
            f"different models; {REEXPORT}"
        )
    return words


# ----------------------------------------------------------------------------- model.safetensors
def _shared_groups(state: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """For every entry of a state dict, the names of all entries viewing the same tensor (itself included)."""
    by_tensor: dict[tuple, set[str]] = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        by_tensor.setdefault(key, set()).add(name)
    return {name: frozenset(group) for group in by_tensor.values() for name in group}


def save_weights(path: Path, model: nn.Module) -> None:
    """The model's state as safetensors; a tensor several names share is stored under one of them
    (safetensors refuses shared tensors; ``safetensors.torch.save_model`` keeps one name)."""
    from safetensors.torch import save_model

    save_model(model, str(path))


def load_weights(path: Path, model: nn.Module, device: str = "cpu") -> None:
    """Load model.safetensors into ``model`` after checking that it holds exactly the model's
    tensors (each shared one once) with the model's shapes."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except Exception as err:  # safetensors raises its own SafetensorError (an Exception) on damaged files
        raise PretrainedFolderError(f"{path}: not a readable safetensors file (truncated or damaged?): {err}; {REEXPORT}") from None
    state = model.state_dict()
    groups = _shared_groups(state)
    missing = sorted({" / ".join(sorted(groups[name])) for name in state if not groups[name] & shapes.keys()})
    unexpected = sorted(set(shapes) - set(state))
    doubled = sorted({" and ".join(sorted(groups[name] & shapes.keys())) for name in state if len(groups[name] & shapes.keys()) > 1})
    wrong = [f"{name} {shapes[name]} (the config makes {list(state[name].shape)})" for name in state if name in shapes and shapes[name] != list(state[name].shape)]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("not in the model " + ", ".join(unexpected))
    if doubled:
        problems.append("stored twice although the config ties them: " + "; ".join(doubled))
    if wrong:
        problems.append("wrong shape: " + ", ".join(wrong))
    if problems:
        raise PretrainedFolderError(
            f"{path}: the weights do not fit config.json: {'; '.join(problems)}. The two files come from "
            f"different models; {REEXPORT}"
        )
    load_model(model, str(path), strict=True, device=device)

"""The model card (README.md) of an exported language model: what it is, where it came from, how to load it.

:func:`render_model_card` is a pure function of the folder's config (``onlstm.pretrained.config_record``)
and a :class:`ModelCardInfo` the exporter fills from a run folder; ``RNNLanguageModel.save_pretrained``
and ``push_to_hub`` write it. Anything not given is written as "not recorded", never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LIBRARY_NAME = "onlstm"
TAGS = ("onlstm", "language-modeling", "rnn", "unsupervised-parsing")
PAPER = "Shen, Tan, Sordoni & Courville, *Ordered Neurons: Integrating Tree Structures into Recurrent Neural Networks*, ICLR 2019"
PAPER_URL = "https://arxiv.org/abs/1810.09536"
NOT_RECORDED = "not recorded"
# what the card's table says about each backbone field (onlstm.lm.BackboneConfig)
FIELD_NOTES = {
    "arch": "ON-LSTM or the LSTM baseline",
    "emb_size": "word embedding size",
    "hidden_size": "size of the inner layers",
    "n_layers": "recurrent layers",
    "chunk_size": "neurons sharing one master-gate value (ON-LSTM)",
    "dropout": "locked dropout on the last layer's output",
    "dropouth": "locked dropout between layers",
    "dropouti": "locked dropout on the embeddings",
    "dropoute": "embedding dropout (whole word types)",
    "wdrop": "DropConnect on the hidden-to-hidden weights",
    "tie_weights": "decoder weight = embedding weight",
}


@dataclass(frozen=True)
class ModelCardInfo:
    """Where the weights came from. Every field is optional; what is left out the card calls "not recorded"."""

    title: str | None = None  # the card's heading; default: "ON-LSTM language model" / "LSTM language model"
    data: str | None = None  # what it was trained on, e.g. "Penn Treebank (Mikolov's text), ptb/train.txt"
    overrides: Sequence[str] = ()  # the training run's command-line overrides (its recipe), e.g. ["experiment=ptb_cpu"]
    steps: int | None = None  # optimizer steps the weights were trained for
    metrics: Mapping[str, float] = field(default_factory=dict)  # validation and test metrics as logged ("val/ppl", "test/ppl")
    metrics_notes: Sequence[str] = ()  # what the metrics are of, or why some are not given (shown under them)
    commit: str | None = None  # the commit of the code that trained it
    source: str | None = None  # what was exported (a checkpoint's path)
    load_as: str | None = None  # what the card's loading example passes to from_pretrained (a Hub id); default: a folder


def front_matter() -> str:
    """The card's YAML header, which the Hub reads (library and tags)."""
    return "---\n" + f"library_name: {LIBRARY_NAME}\n" + "tags:\n" + "".join(f"- {tag}\n" for tag in TAGS) + "---\n"


def _number(value: float) -> str:
    return f"{value:,.6g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.3e}"


def render_model_card(config: Mapping[str, Any], info: ModelCardInfo | None = None) -> str:
    """The card's Markdown. ``config``: what config.json holds (``format_version``, ``vocab_size`` and
    the backbone's fields); ``info``: the exporter's account of the weights."""
    info = info or ModelCardInfo()
    arch = "ON-LSTM" if config.get("arch") == "onlstm" else "LSTM"
    title = info.title or f"{arch} language model"
    where = info.load_as or "path/to/this/folder"
    lines = [
        front_matter(),
        f"# {title}",
        "",
        f"A word-level {arch} language model of the `onlstm` library ({PAPER}, [{PAPER_URL}]({PAPER_URL})): "
        "embedding, recurrent stack, decoder, AWD-LSTM style.",
        "",
        "## Training",
        "",
        f"- data: {info.data or NOT_RECORDED}",
        "- recipe (overrides of the training run): " + (" ".join(f"`{o}`" for o in info.overrides) if info.overrides else NOT_RECORDED),
        f"- optimizer steps: {info.steps:,}" if info.steps is not None else f"- optimizer steps: {NOT_RECORDED}",
        f"- code commit: `{info.commit}`" if info.commit else f"- code commit: {NOT_RECORDED}",
    ]
    if info.source:
        lines.append(f"- exported from: `{info.source}`")
    lines += ["", "## Metrics", ""]
    if info.metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_number(float(value))} |" for name, value in sorted(info.metrics.items())]
    else:
        lines.append(NOT_RECORDED)
    if info.metrics_notes:
        lines += [""] + [f"- {note}" for note in info.metrics_notes]
    lines += ["", "## Model (config.json)", "", "| field | value | |", "|---|---|---|"]
    lines.append(f"| vocab_size | {config.get('vocab_size')} | words (vocab.txt) |")
    shown = {name: json.dumps(value) if isinstance(value, bool) else value for name, value in config.items()}  # as in config.json
    lines += [f"| {name} | {value} | {FIELD_NOTES.get(name, '')} |" for name, value in shown.items() if name not in ("format_version", "vocab_size")]
    lines += [
        "",
        "## How to load it",
        "",
        "With the `onlstm` package installed; loading needs only its model library (plain PyTorch: no Lightning, no Hydra):",
        "",
        "```python",
        "import torch",
        "from onlstm import RNNLanguageModel",
        "",
        f'model = RNNLanguageModel.from_pretrained("{where}")  # eval mode, on the CPU',
        'ids = torch.tensor([[model.vocab.index(w)] for w in ["<eos>", "the", "market"]])  # (time, batch); words outside model.vocab: "<unk>"',
        "log_probs = model(ids).logits.log_softmax(-1)  # (time, batch, vocab): the next word's log-probabilities",
        "```",
        "",
        "How the recurrence runs is chosen when loading, not stored: `from_pretrained(..., implementation=\"reference\")` "
        "runs the paper's per-step equations, `map_location=\"cuda\"` loads onto a GPU.",
        "",
        f"Files: `config.json` (format version {config.get('format_version')}), `model.safetensors` (the weights; "
        "tensors only), `vocab.txt` (one word per line; line k is word id k - 1), `README.md` (this card).",
        "",
    ]
    return "\n".join(lines)

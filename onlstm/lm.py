"""RNNLanguageModel: embedding -> recurrent stack -> tied decoder, AWD-LSTM style (the front end,
:class:`WordEncoder`, is shared with the logic task's classifier); saved as and loaded from a
portable folder (``save_pretrained`` / ``from_pretrained``, :mod:`onlstm.pretrained`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import Tensor, nn

from onlstm import pretrained
from onlstm.model_card import ModelCardInfo, render_model_card
from onlstm.regularizers import LockedDropout, embedded_dropout
from onlstm.cuda_graphs import GraphedStack
from onlstm.stack import DEFAULT_IMPLEMENTATION, Hidden, LSTMStack, ONLSTMStack, StackOutput


@dataclass
class BackboneConfig:
    """Hyperparameters of the recurrent backbone. Defaults: the paper's PTB language model.

    What the model *is* (it is stored in every checkpoint); how it runs (the recurrence's
    implementation, CUDA graphs) is an argument of :class:`RNNLanguageModel` / :func:`build_stack`.
    """

    arch: str = "onlstm"  # "onlstm" or "lstm"
    emb_size: int = 400  # word embedding size (= last layer size when weights are tied)
    hidden_size: int = 1150  # size of every layer but the last (when tied) / every layer
    n_layers: int = 3
    chunk_size: int = 10  # neurons sharing one master-gate value; must divide the layer sizes
    dropout: float = 0.45  # locked dropout on the last layer's output
    dropouth: float = 0.3  # locked dropout between layers
    dropouti: float = 0.5  # locked dropout on the embeddings
    dropoute: float = 0.1  # embedding dropout (whole word types)
    wdrop: float = 0.45  # DropConnect on hidden-to-hidden weights
    tie_weights: bool = True  # decoder weight = embedding weight (last layer size = emb_size)

    def validate(self) -> None:
        """Raise ValueError naming the field when the sizes cannot make a backbone."""
        if self.arch not in ("onlstm", "lstm"):
            raise ValueError(f"model.arch must be 'onlstm' or 'lstm', got {self.arch!r}")
        if self.n_layers < 1:
            raise ValueError(f"model.n_layers must be at least 1, got {self.n_layers}")
        for field in ("emb_size", "hidden_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"model.{field} must be at least 1, got {getattr(self, field)}")
        if self.arch == "onlstm":
            if self.chunk_size < 1:
                raise ValueError(f"model.chunk_size must be at least 1 (neurons per master-gate value), got {self.chunk_size}")
            for size in self.layer_sizes()[1:]:
                if size % self.chunk_size:
                    raise ValueError(
                        f"model.chunk_size={self.chunk_size} must divide every layer size {self.layer_sizes()[1:]} "
                        f"(it does not divide {size}): pick a divisor, e.g. model.chunk_size="
                        f"{next(c for c in range(min(self.chunk_size, size), 0, -1) if size % c == 0 and self.hidden_size % c == 0)}"
                    )

    def layer_sizes(self) -> list[int]:
        last = self.emb_size if self.tie_weights else self.hidden_size
        return [self.emb_size] + [self.hidden_size] * (self.n_layers - 1) + [last]


def build_stack(
    cfg: BackboneConfig, layer_sizes: list[int] | None = None, implementation: str = DEFAULT_IMPLEMENTATION
) -> nn.Module:
    """The stack ``cfg`` describes; ``implementation`` (ON-LSTM only) picks how its recurrence runs."""
    sizes = cfg.layer_sizes() if layer_sizes is None else layer_sizes
    if cfg.arch == "onlstm":
        return ONLSTMStack(sizes, cfg.chunk_size, dropout=cfg.dropouth, dropconnect=cfg.wdrop, implementation=implementation)
    if cfg.arch == "lstm":
        return LSTMStack(sizes, dropout=cfg.dropouth, dropconnect=cfg.wdrop)
    raise ValueError(f"model.arch must be 'onlstm' or 'lstm', got {cfg.arch!r}")


class LMOutput(NamedTuple):
    logits: Tensor  # (time, batch, vocab)
    hidden: Hidden
    raw_outputs: list[Tensor]
    outputs: list[Tensor]  # per layer after dropout; the last one after the output dropout (for AR)
    distances: Tensor | None
    distances_in: Tensor | None


class WordEncoder(nn.Module):
    """Word ids -> embedding -> recurrent stack, AWD-LSTM's regularised front end, shared by the
    language model and the logic task's pair classifier: embedding dropout (whole word types,
    ``cfg.dropoute``), locked dropout on the embeddings (``cfg.dropouti``), then the stack. What
    follows the stack's output (a decoder, a classifier) is the subclass's."""

    def __init__(self, vocab_size: int, cfg: BackboneConfig, implementation: str = DEFAULT_IMPLEMENTATION,
                 padding_idx: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=padding_idx)
        self.stack = build_stack(cfg, implementation=implementation)
        self.lockdrop = LockedDropout()

    def embed(self, tokens: Tensor) -> Tensor:
        """(time, batch) ids -> (time, batch, emb_size) dropped embeddings: the stack's input."""
        emb = embedded_dropout(self.embedding, tokens, self.cfg.dropoute, self.training)
        return self.lockdrop(emb, self.cfg.dropouti)


class RNNLanguageModel(WordEncoder, PyTorchModelHubMixin):
    """Embedding -> recurrent stack -> decoder. ``save_pretrained(folder, vocab=...)`` writes a
    folder that ``RNNLanguageModel.from_pretrained(folder_or_hub_id)`` loads with plain PyTorch, and
    ``push_to_hub(repo_id)`` publishes (huggingface_hub's mixin); the format: :mod:`onlstm.pretrained`,
    the card (its Hub metadata included): :mod:`onlstm.model_card`."""

    def __init__(
        self,
        vocab_size: int,
        cfg: BackboneConfig = BackboneConfig(),
        implementation: str = DEFAULT_IMPLEMENTATION,  # the ON-LSTM recurrence: ONLSTMStack.IMPLEMENTATIONS
        cuda_graphs: bool = False,  # replay training steps of the stack as CUDA graphs (onlstm/cuda_graphs.py)
    ):
        """``cfg`` is what the model is; ``implementation`` and ``cuda_graphs`` are how it runs: they
        change neither the parameters nor the numbers (up to float rounding), so they are not part
        of ``cfg`` and a checkpoint does not store them."""
        super().__init__(vocab_size, cfg, implementation)
        self.vocab_size = vocab_size
        self.cuda_graphs = cuda_graphs
        self.decoder = nn.Linear(cfg.layer_sizes()[-1], vocab_size)
        self._graphed_stack: GraphedStack | None = None  # made at the first graphed call
        if cfg.tie_weights:
            self.decoder.weight = self.embedding.weight
        # the word of each id (index = id), when known: from_pretrained sets it, save_pretrained writes
        # it; the model itself never reads it
        self.vocab: list[str] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """AWD-LSTM's initialisation of the embedding and decoder."""
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not self.cfg.tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_hidden(self, batch_size: int) -> Hidden:
        return self.stack.init_hidden(batch_size, like=self.embedding.weight)

    def features(self, tokens: Tensor, hidden: Hidden | None = None) -> StackOutput:
        """The recurrent stack's outputs and gate distances for (time, batch) word ids, without
        the decoder: what parsing and other probes of the hidden states need (the decoder is the
        vocabulary-sized part of the work)."""
        emb = self.embed(tokens)
        if self.cuda_graphs and self.training and emb.is_cuda and torch.is_grad_enabled():
            if self._graphed_stack is None:
                self._graphed_stack = GraphedStack(self.stack)
            return self._graphed_stack(emb, hidden)
        return self.stack(emb, hidden)

    def forward(self, tokens: Tensor, hidden: Hidden | None = None) -> LMOutput:
        """tokens: (time, batch) word ids. Returns logits for the next word at every position."""
        out = self.features(tokens, hidden)
        output = self.lockdrop(out.output, self.cfg.dropout)
        outputs = out.outputs[:-1] + [output]
        return LMOutput(self.decoder(output), out.hidden, out.raw_outputs, outputs, out.distances, out.distances_in)

    # ----------------------------------------------------------------- portable folders
    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        vocab: Sequence[str] | None = None,
        card: ModelCardInfo | None = None,
        **hub_kwargs: Any,
    ) -> str | None:
        """Write ``config.json``, ``model.safetensors``, ``vocab.txt`` and the model card
        ``README.md`` (:func:`onlstm.model_card.render_model_card` of ``card``; an older card in the
        folder is replaced, as it described other weights) into ``save_directory``.

        ``vocab``: the word of each id; attached to the model (``self.vocab``) as ``from_pretrained``
        does; may be left out when ``self.vocab`` is set. ``hub_kwargs``: the mixin's
        (``push_to_hub=True, repo_id=...`` uploads the folder too). ``push_to_hub(repo_id,
        model_card_kwargs={"card": card})`` writes the same folder and uploads it."""
        vocab = list(vocab) if vocab is not None else self.vocab
        if vocab is None:
            raise ValueError("save_pretrained needs the vocabulary: pass vocab=[word of id 0, word of id 1, ...] or set model.vocab")
        pretrained.check_vocab(vocab, self.vocab_size)
        self.vocab = vocab
        (Path(save_directory) / pretrained.CARD_FILE).unlink(missing_ok=True)
        card_kwargs = dict(hub_kwargs.pop("model_card_kwargs", None) or {})
        if card is not None:
            card_kwargs["card"] = card
        return super().save_pretrained(save_directory, model_card_kwargs=card_kwargs, **hub_kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's hook: the files but the card (written after it by :meth:`generate_model_card`)."""
        if self.vocab is None:  # save_pretrained checked it; this guards a direct call
            raise ValueError("no vocabulary to save: set model.vocab")
        pretrained.write_config(save_directory / pretrained.CONFIG_FILE, self.vocab_size, self.cfg)
        pretrained.save_weights(save_directory / pretrained.WEIGHTS_FILE, self)
        pretrained.write_vocab(save_directory / pretrained.VOCAB_FILE, self.vocab)

    def generate_model_card(self, card: ModelCardInfo | None = None) -> ModelCard:
        """The mixin's hook for README.md (``model_card_kwargs`` arrive here)."""
        return ModelCard(render_model_card(pretrained.config_record(self.vocab_size, self.cfg), card))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        implementation: str = DEFAULT_IMPLEMENTATION,
        cuda_graphs: bool = False,
        map_location: str = "cpu",
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> RNNLanguageModel:
        """The model of a folder ``save_pretrained`` wrote, or of a Hub repository ``user/name``, in
        eval mode on ``map_location``, with ``.vocab`` set. What the model is comes from the folder;
        how it runs (``implementation``, ``cuda_graphs``) from the arguments, as in the constructor.
        ``revision`` ... ``token``: huggingface_hub's download options (Hub ids only).

        A missing file, a config with an unknown, missing or mistyped field, weights whose names or
        shapes do not fit the config, a vocabulary of another size: :class:`onlstm.pretrained.PretrainedFolderError`."""
        download = dict(revision=revision, cache_dir=cache_dir, force_download=force_download,
                        local_files_only=local_files_only, token=token)
        files = pretrained.locate_files(pretrained_model_name_or_path, **download)
        vocab_size, cfg = pretrained.read_config(files[pretrained.CONFIG_FILE], BackboneConfig)
        vocab = pretrained.read_vocab(files[pretrained.VOCAB_FILE], vocab_size)
        model = cls(vocab_size, cfg, implementation=implementation, cuda_graphs=cuda_graphs).to(map_location)
        pretrained.load_weights(files[pretrained.WEIGHTS_FILE], model, device=map_location)
        model.vocab = vocab
        return model.eval()

"""Portable model folders: ``RNNLanguageModel.save_pretrained`` / ``from_pretrained`` (onlstm/pretrained.py),
the model card (onlstm/model_card.py), and the error each damaged folder gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from onlstm import ModelCardInfo, PretrainedFolderError, RNNLanguageModel
from onlstm.model_card import render_model_card
from onlstm.pretrained import config_record
from tests.helpers import load_in_fresh_interpreter, tiny_backbone

# words a vocabulary file must carry unchanged: markup characters, non-ASCII, PTB's placeholders
VOCAB = ["<eos>", "<unk>", "the", "N", "&", "<b>", "naïve", "a\tb", "don't", "$", "mr.", "économie"]
BACKBONES = {
    "onlstm-tied": tiny_backbone(),
    "onlstm-untied": tiny_backbone(tie_weights=False),
    "lstm-tied": tiny_backbone(arch="lstm"),
    "lstm-untied": tiny_backbone(arch="lstm", tie_weights=False),
}


def trained_like(cfg, seed: int = 0) -> RNNLanguageModel:
    """A model whose every tensor is random, so that a tensor left unloaded (which the constructor
    would initialise, the decoder bias to zeros) changes the numbers."""
    torch.manual_seed(seed)
    model = RNNLanguageModel(len(VOCAB), cfg)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model.eval()


TOKENS = torch.tensor([[0, 2, 5, 7, 3, 11, 0], [0, 1, 1, 4, 6, 8, 9]]).T  # (time, batch)


def log_probs(model: RNNLanguageModel) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits.log_softmax(-1)


@pytest.fixture
def saved(tmp_path) -> Path:
    """A folder of the tiny tied ON-LSTM."""
    folder = tmp_path / "model"
    trained_like(tiny_backbone()).save_pretrained(folder, vocab=VOCAB)
    return folder


# ----------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("name", list(BACKBONES))
def test_round_trip_gives_identical_log_probabilities(tmp_path, name):
    model = trained_like(BACKBONES[name])
    model.save_pretrained(tmp_path / name, vocab=VOCAB)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["README.md", "config.json", "model.safetensors", "vocab.txt"]
    loaded = RNNLanguageModel.from_pretrained(tmp_path / name)
    assert not loaded.training, "from_pretrained returns the model in eval mode"
    assert loaded.cfg == model.cfg and loaded.vocab_size == len(VOCAB)
    assert loaded.vocab == VOCAB
    assert (loaded.decoder.weight is loaded.embedding.weight) == model.cfg.tie_weights
    assert torch.equal(log_probs(loaded), log_probs(model))


def test_tied_weight_is_stored_once(saved):
    from safetensors import safe_open

    with safe_open(str(saved / "model.safetensors"), framework="pt") as handle:
        names = set(handle.keys())
    assert len({"embedding.weight", "decoder.weight"} & names) == 1, names


def test_config_json_holds_what_the_model_is_and_not_how_it_ran(tmp_path):
    model = RNNLanguageModel(len(VOCAB), tiny_backbone(), implementation="reference")
    model.save_pretrained(tmp_path, vocab=VOCAB)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {"format_version": 1, "vocab_size": len(VOCAB), "arch": "onlstm", "emb_size": 16, "hidden_size": 32,
                      "n_layers": 2, "chunk_size": 4, "dropout": 0.45, "dropouth": 0.3, "dropouti": 0.5,
                      "dropoute": 0.1, "wdrop": 0.45, "tie_weights": True}
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8") == "".join(w + "\n" for w in VOCAB)


def test_how_it_runs_is_chosen_when_loading(saved):
    default = RNNLanguageModel.from_pretrained(saved)
    reference = RNNLanguageModel.from_pretrained(saved, implementation="reference")
    assert (default.stack.implementation, reference.stack.implementation) == ("fused", "reference")
    torch.testing.assert_close(log_probs(reference), log_probs(default), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="loading onto a GPU needs one")
def test_map_location_puts_the_model_on_that_device(saved):
    model = RNNLanguageModel.from_pretrained(saved, map_location="cuda")
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    tokens = torch.tensor([[0, 2, 5, 7, 3, 11, 0]]).T
    with torch.no_grad():
        got = model(tokens.cuda()).logits.log_softmax(-1).cpu()
        expected = RNNLanguageModel.from_pretrained(saved)(tokens).logits.log_softmax(-1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_save_pretrained_uses_the_attached_vocabulary(tmp_path, saved):
    loaded = RNNLanguageModel.from_pretrained(saved)
    loaded.save_pretrained(tmp_path / "again")  # no vocab=: the one from_pretrained attached
    assert (tmp_path / "again" / "vocab.txt").read_bytes() == (saved / "vocab.txt").read_bytes()
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (saved / "model.safetensors").read_bytes()


def test_loading_imports_neither_lightning_nor_hydra(saved, tmp_path):
    """A user with the folder needs the library only: a fresh interpreter loads it and computes
    the checkpoint's log-probabilities with no Lightning or Hydra module imported."""
    expected = log_probs(RNNLanguageModel.from_pretrained(saved))
    assert load_in_fresh_interpreter(saved, TOKENS, expected, tmp_path) == f"ok {len(VOCAB)} ['<eos>', '<unk>']"


def test_a_hub_id_is_downloaded_file_by_file(saved, monkeypatch):
    """A repository id goes to huggingface_hub's downloader (faked here: no network) for each file."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    asked = []

    def fake_download(repo_id, filename, **options):
        asked.append((repo_id, filename, options))
        if not (saved / filename).is_file():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(saved / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model = RNNLanguageModel.from_pretrained("someone/tiny-onlstm", revision="v1")
    assert model.vocab == VOCAB and model.cuda_graphs is False  # how it runs: the constructor's defaults
    defaults = {"revision": "v1", "cache_dir": None, "force_download": False, "local_files_only": False, "token": None}
    assert asked == [("someone/tiny-onlstm", name, defaults) for name in ("config.json", "model.safetensors", "vocab.txt")]
    # every download option the caller gives reaches the downloader as given
    options = {"revision": "main", "cache_dir": "/somewhere", "force_download": True, "local_files_only": True,
               "token": "hf_abc"}
    asked.clear()
    RNNLanguageModel.from_pretrained("someone/tiny-onlstm", **options)
    assert [given for _, _, given in asked] == [options] * 3
    (saved / "vocab.txt").unlink()
    with pytest.raises(PretrainedFolderError, match="Hub repository someone/tiny-onlstm: no vocab.txt"):
        RNNLanguageModel.from_pretrained("someone/tiny-onlstm")


@pytest.fixture
def fake_hub(monkeypatch) -> dict[str, bytes]:
    """The Hub client faked (no network): what would be uploaded, file name -> bytes."""
    import huggingface_hub.hub_mixin

    uploaded: dict[str, bytes] = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **options):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **options):
            uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
            return f"commit of {repo_id}"

    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", FakeApi)
    return uploaded


def test_push_to_hub_uploads_the_same_folder(fake_hub):
    """push_to_hub is the mixin's: it saves through save_pretrained into a temporary folder and
    uploads that; what would be uploaded is checked."""
    uploaded = fake_hub
    model = trained_like(tiny_backbone())
    model.vocab = list(VOCAB)
    url = model.push_to_hub("someone/tiny-onlstm", model_card_kwargs={"card": ModelCardInfo(steps=7, commit="abc123")})
    assert url == "commit of someone/tiny-onlstm"
    assert sorted(uploaded) == ["README.md", "config.json", "model.safetensors", "vocab.txt"]
    assert uploaded["vocab.txt"].decode() == "".join(w + "\n" for w in VOCAB)
    card = uploaded["README.md"].decode()
    assert "- optimizer steps: 7" in card and "- code commit: `abc123`" in card
    assert json.loads(uploaded["config.json"])["vocab_size"] == len(VOCAB)


def test_save_pretrained_hands_the_mixins_options_on(fake_hub, tmp_path):
    """``save_pretrained(folder, push_to_hub=True, repo_id=...)`` (the mixin's options) uploads the
    folder it wrote."""
    url = trained_like(tiny_backbone()).save_pretrained(tmp_path, vocab=VOCAB, push_to_hub=True, repo_id="someone/tiny")
    assert url == "commit of someone/tiny"
    assert {name: (tmp_path / name).read_bytes() for name in fake_hub} == fake_hub
    assert sorted(fake_hub) == ["README.md", "config.json", "model.safetensors", "vocab.txt"]


# ----------------------------------------------------------------------------- the model card
def test_model_card_carries_the_given_metadata(tmp_path):
    info = ModelCardInfo(
        title="ON-LSTM on PTB, 150 steps",
        data="Penn Treebank (Mikolov's text): ptb/train.txt",
        overrides=["experiment=ptb_cpu", "trainer.max_steps=150"],
        steps=150,
        metrics={"val/ppl": 1234.5678, "test/ppl": 1187.25, "test/loss": 7.0794},
        metrics_notes=["test/loss, test/ppl: the run's test of this checkpoint"],
        commit="3c071ddbf2c8",
        source="logs/lm/runs/2026-12-06_10-00-00/checkpoints/last.ckpt",
        load_as="someone/onlstm-ptb",
    )
    model = trained_like(tiny_backbone())
    model.save_pretrained(tmp_path, vocab=VOCAB, card=ModelCardInfo(title="an older card"))
    model.save_pretrained(tmp_path, card=info)  # a second export replaces the card
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: onlstm\n")
    assert "# ON-LSTM on PTB, 150 steps" in card and "an older card" not in card
    assert "- data: Penn Treebank (Mikolov's text): ptb/train.txt" in card
    assert "`experiment=ptb_cpu` `trainer.max_steps=150`" in card
    assert "- optimizer steps: 150" in card
    assert "| val/ppl | 1,234.57 |" in card and "| test/ppl | 1,187.25 |" in card and "| test/loss | 7.0794 |" in card
    assert "| val/ppl | 1,234.57 |\n\n- test/loss, test/ppl: the run's test of this checkpoint\n\n## Model" in card
    assert "- code commit: `3c071ddbf2c8`" in card
    assert "- exported from: `logs/lm/runs/2026-12-06_10-00-00/checkpoints/last.ckpt`" in card
    assert 'RNNLanguageModel.from_pretrained("someone/onlstm-ptb")' in card
    assert "| vocab_size | 12 | words (vocab.txt) |" in card
    assert "| hidden_size | 32 |" in card and "| tie_weights | true |" in card


def test_model_card_says_what_was_not_recorded():
    card = render_model_card(config_record(10, tiny_backbone(arch="lstm")))
    assert "# LSTM language model" in card
    for line in ("- data: not recorded", "- optimizer steps: not recorded", "- code commit: not recorded"):
        assert line in card
    assert "## Metrics\n\nnot recorded" in card


# ----------------------------------------------------------------------------- bad folders
def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is DELETE:
            del config[key]
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


DELETE = object()


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "vocab.txt"])
def test_a_missing_file_is_named(saved, missing):
    (saved / missing).unlink()
    with pytest.raises(PretrainedFolderError, match=rf"{saved}: no {missing} in the folder"):
        RNNLanguageModel.from_pretrained(saved)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"hiden_size": 32}, r"unknown field\(s\) hiden_size; the fields are arch, emb_size"),
        ({"chunk_size": DELETE}, r"missing field\(s\) chunk_size"),
        ({"implementation": "fused"}, r"implementation say\(s\) how a model runs.*pass it to from_pretrained"),
        ({"n_layers": "2"}, r"field n_layers must be an int, got '2'"),
        ({"tie_weights": 1}, r"field tie_weights must be a bool, got 1"),
        ({"format_version": DELETE}, r"no format_version: not a folder written by RNNLanguageModel.save_pretrained"),
        ({"format_version": 2}, r"format_version 2 is newer than this onlstm reads \(1\): upgrade onlstm"),
        ({"vocab_size": 0}, r"vocab_size must be a positive integer, got 0"),
        ({"chunk_size": 5}, r"chunk_size=5 must divide every layer size"),
    ],
    ids=["unknown", "missing", "run-field", "type", "bool", "no-version", "newer", "vocab-size", "invalid"],
)
def test_a_bad_config_names_the_file_and_the_field(saved, changes, message):
    edit_config(saved, **changes)
    with pytest.raises(PretrainedFolderError, match=rf"config.json: .*{message}"):
        RNNLanguageModel.from_pretrained(saved)


def test_a_config_that_is_not_json_names_the_line(saved):
    (saved / "config.json").write_text('{"format_version": 1,\n "vocab_size": 12,,\n}')
    with pytest.raises(PretrainedFolderError, match=r"config.json: not JSON \(line 2, column 19"):
        RNNLanguageModel.from_pretrained(saved)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"hidden_size": 36}, r"wrong shape: stack.cells.0.ih.weight \[144, 16\] \(the config makes \[162, 16\]\)"),
        ({"arch": "lstm"}, r"missing .*stack.layers.0.hh.bias.*; not in the model .*stack.cells.0.hh.bias"),
        ({"n_layers": 3}, r"missing stack.cells.2"),
    ],
    ids=["shape", "names", "layers"],
)
def test_weights_that_do_not_fit_the_config_are_named(saved, changes, message):
    edit_config(saved, **changes)
    with pytest.raises(PretrainedFolderError, match=rf"model.safetensors: the weights do not fit config.json: .*{message}"):
        RNNLanguageModel.from_pretrained(saved)


def test_untied_weights_under_a_tied_config_are_refused(tmp_path):
    trained_like(tiny_backbone(tie_weights=False, hidden_size=16)).save_pretrained(tmp_path, vocab=VOCAB)
    edit_config(tmp_path, tie_weights=True)  # same shapes; the file holds two decoder matrices
    with pytest.raises(PretrainedFolderError, match="stored twice although the config ties them: decoder.weight and embedding.weight"):
        RNNLanguageModel.from_pretrained(tmp_path)


def test_damaged_weights_are_named(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(PretrainedFolderError, match=r"model.safetensors: not a readable safetensors file"):
        RNNLanguageModel.from_pretrained(saved)


@pytest.mark.parametrize(
    "text,message",
    [
        ("".join(w + "\n" for w in VOCAB[:-1]), r"vocab.txt: 11 words, but config.json says vocab_size=12"),
        ("".join(w + "\n" for w in VOCAB + ["extra"]), r"vocab.txt: 13 words, but config.json says vocab_size=12"),
        ("".join(w + "\n" for w in VOCAB[:3] + [""] + VOCAB[4:]), r"vocab.txt:4: empty line"),
        ("".join(w + "\n" for w in VOCAB[:3] + ["the"] + VOCAB[4:]), r"vocab.txt:4: 'the' again \(first on line 3\)"),
        ("".join(w + "\r\n" for w in VOCAB), r"vocab.txt: Windows line endings"),
    ],
    ids=["fewer", "more", "empty-line", "duplicate", "crlf"],
)
def test_a_vocabulary_that_does_not_fit_is_named(saved, text, message):
    (saved / "vocab.txt").write_bytes(text.encode("utf-8"))
    with pytest.raises(PretrainedFolderError, match=message):
        RNNLanguageModel.from_pretrained(saved)


def test_a_path_that_is_no_folder_is_named(tmp_path, saved):
    with pytest.raises(PretrainedFolderError, match=r"no such folder \(and not a Hub repository id"):
        RNNLanguageModel.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(PretrainedFolderError, match=r"config.json is a file; give the folder"):
        RNNLanguageModel.from_pretrained(saved / "config.json")


def test_errors_are_value_errors():
    assert issubclass(PretrainedFolderError, ValueError)


@pytest.mark.parametrize(
    "vocab,message",
    [
        (None, r"^save_pretrained needs the vocabulary: pass vocab=\[word of id 0, word of id 1, \.\.\.\] or set model\.vocab$"),
        (VOCAB[:-1], "the vocabulary has 11 words, the model 12 ids"),
        (VOCAB[:-1] + ["two\nlines"], r"vocabulary word 11 is 'two\\nlines'"),
        (VOCAB[:-1] + ["the"], r"vocabulary words 2 and 11 are both 'the'"),
    ],
    ids=["none", "size", "newline", "duplicate"],
)
def test_save_pretrained_refuses_a_vocabulary_it_cannot_write(tmp_path, vocab, message):
    with pytest.raises(ValueError, match=message):
        trained_like(tiny_backbone()).save_pretrained(tmp_path / "out", vocab=vocab)
    assert not (tmp_path / "out").exists(), "nothing is written when the vocabulary is refused"


def test_the_mixins_file_hook_called_directly_refuses_a_model_without_a_vocabulary(tmp_path):
    """``_save_pretrained`` is huggingface_hub's hook (save_pretrained checks the vocabulary before
    it); called on its own, it says what is missing rather than writing a folder without vocab.txt."""
    with pytest.raises(ValueError) as info:
        trained_like(tiny_backbone())._save_pretrained(tmp_path)
    assert str(info.value) == "no vocabulary to save: set model.vocab"
    assert list(tmp_path.iterdir()) == []


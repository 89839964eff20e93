"""onlstm-parse: raw sentences -> words of the checkpoint's vocabulary -> trees, and its errors."""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

import tasks.reports.parse_sentences as parse_sentences
from onlstm import BackboneConfig, RNNLanguageModel
from onlstm.parsing.inference import sequence_gate_distances
from onlstm.parsing.text import TextStyle, detect_style, encode, normalize
from onlstm.parsing.trees import from_bracketed, split_tree
from tests.helpers import (
    DATA_DIR,
    NO_DROPOUT,
    ROOT,
    check_drawn_trees,
    cli_env,
    drawn_trees,
    needs_browser,
    open_tree_page,
    requires_data,
    tiny_backbone,
)

# a vocabulary written like Mikolov's PTB text, and one written like WikiText-2
PTB_WORDS = ["<eos>", "<unk>", "the", "cat", "sat", "on", "mat", "N", "$", "'s", "do", "n't", "dogs", "bark", "a",
             "stocks", "fell", "monday", "they", "did", "mr.", "&", "'"]  # fmt: skip
WIKI_WORDS = ["<eos>", "<unk>", "The", "the", "cat", "sat", "on", "mat", ".", ",", "(", ")", "@-@", "@.@", "@,@",
              "role", "playing", "3", "5", "don", "'t", "\"", "dogs"]  # fmt: skip
TINY = tiny_backbone(**NO_DROPOUT)
SENTENCES = ["The cat sat on the mat.", "Dogs bark.", "Stocks fell 3% on Monday, didn't they?", "A cat", "the dogs"]


def save_checkpoint(path: Path, words: list[str], cfg: BackboneConfig = TINY, seed: int = 0) -> Path:
    """A checkpoint as task=lm writes it (the parts tasks/checkpoints.py reads), random weights."""
    torch.manual_seed(seed)
    model = RNNLanguageModel(len(words), cfg)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": {"model": asdict(cfg)}, "vocab": list(words), "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "ptb": save_checkpoint(folder / "ptb.ckpt", PTB_WORDS),
        "wiki": save_checkpoint(folder / "wiki.ckpt", WIKI_WORDS),
        "lstm": save_checkpoint(folder / "lstm.ckpt", PTB_WORDS, replace(TINY, arch="lstm")),
    }


def parse(capsys, *argv: str) -> tuple[int, str, str]:
    code = parse_sentences.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records(capsys, *argv: str) -> list[dict]:
    code, out, err = parse(capsys, *argv, "--jsonl", "--distances")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def reference_distances(checkpoint: Path, words: list[str]) -> list[list[float]]:
    """One sentence alone, fed as ``<eos> words <eos>`` as task=parsing feeds treebank sentences."""
    state = torch.load(checkpoint, weights_only=True)
    model = RNNLanguageModel(len(state["vocab"]), BackboneConfig(**state["hyper_parameters"]["model"]))
    model.load_state_dict({k[len("model.") :]: v for k, v in state["state_dict"].items()})
    index = {w: i for i, w in enumerate(state["vocab"])}
    ids = [index["<eos>"], *encode(words, index).ids, index["<eos>"]]
    return sequence_gate_distances(model, [ids], batch_size=1)[0].distances[:, 1:-1].tolist()


# ----------------------------------------------------------------------------- normalisation
PTB_STYLE = TextStyle(lowercase=True, numbers_as_n=True, keep_punctuation=False, at_marks=False)
WIKI_STYLE = TextStyle(lowercase=False, numbers_as_n=False, keep_punctuation=True, at_marks=True, apostrophe_t=True)


def test_style_is_read_from_the_vocabulary():
    assert detect_style(PTB_WORDS) == PTB_STYLE
    assert detect_style(WIKI_WORDS) == WIKI_STYLE


@pytest.mark.parametrize(
    "words,field,expected",
    [
        (["."], "keep_punctuation", True), ([","], "keep_punctuation", True), (["the"], "keep_punctuation", False),
        (["@-@"], "at_marks", True), (["@,@"], "at_marks", True), (["@.@"], "at_marks", True),
        (["the"], "at_marks", False),
        (["'t"], "apostrophe_t", True), (["'t", "n't"], "apostrophe_t", False), (["the"], "apostrophe_t", False),
    ],
)
def test_each_sign_of_a_style_is_enough_on_its_own(words, field, expected):
    """A vocabulary shows its corpus's style by any one of its marks: a point or a comma for kept
    punctuation, any of the three @-marks; WikiText's ``'t`` only where the Treebank's ``n't`` is absent."""
    assert getattr(detect_style(["cat", *words]), field) is expected


def test_a_punctuation_dropping_vocabulary_keeps_the_marks_and_the_percent_sign_it_has():
    """Punctuation a PTB-style vocabulary has as words stays, written as the vocabulary writes it
    (the Treebank's quotes as they are), and so does ``%`` after a number where it is a word."""
    vocab = [*PTB_WORDS, "``", "''", "%"]
    assert normalize('They fell "10 %"', PTB_STYLE, vocab) == ["they", "fell", "``", "N", "%", "''"]


@requires_data("ptb", "wikitext-2")
@pytest.mark.parametrize("corpus, style", [("ptb", PTB_STYLE), ("wikitext-2", WIKI_STYLE)])
def test_style_of_the_real_corpora(corpus, style):
    vocab = set((DATA_DIR / corpus / "train.txt").read_text(encoding="utf-8").split())
    assert detect_style(vocab) == style


def test_ptb_spelling_lower_case_numbers_as_n_no_punctuation():
    text = 'Mr. Smith\'s $3.50 (about 10%) "gain", didn\'t it -- & 1,000 dogs\' bones?'
    assert normalize(text, PTB_STYLE, PTB_WORDS) == [
        "mr.", "smith", "'s", "$", "N", "about", "N", "N", "gain", "did", "n't", "it", "&", "N", "dogs", "'", "bones",
    ]  # fmt: skip


def test_wikitext_spelling_keeps_case_punctuation_and_at_marks():
    text = 'The role-playing cat (3.5 "lives") didn\'t sit on 1,000 mats.'
    assert normalize(text, WIKI_STYLE, WIKI_WORDS) == [
        "The", "role", "@-@", "playing", "cat", "(", "3", "@.@", "5", '"', "lives", '"', ")", "didn", "'t", "sit",
        "on", "1", "@,@", "000", "mats", ".",
    ]  # fmt: skip


def test_words_the_tokenizer_would_cut_are_kept_whole():
    vocab = [*PTB_WORDS, "at&t", "c$", "u.s.", "N"]
    text = "AT&T paid C$5 for <unk> in the U.S."
    assert normalize(text, PTB_STYLE, vocab) == ["at&t", "paid", "c$", "N", "for", "<unk>", "in", "the", "u.s."]
    # not words of the vocabulary: cut as the Treebank cuts them
    assert normalize("AT&T in the U.S.", PTB_STYLE, PTB_WORDS) == ["at", "&", "t", "in", "the", "u.s"]
    # the abbreviation that ends a sentence, also as its only word and before closing marks
    assert normalize("U.S.", PTB_STYLE, vocab) == ["u.s."]
    for closing in ('"', '")'):  # one closing mark, two
        assert normalize(f"They fell in the U.S.{closing}", PTB_STYLE, vocab) == ["they", "fell", "in", "the", "u.s."]
    # an ampersand with no word before or after it to join is a word of its own
    assert normalize("& they fell", PTB_STYLE, PTB_WORDS) == ["&", "they", "fell"]
    assert normalize("they fell &", PTB_STYLE, PTB_WORDS) == ["they", "fell", "&"]


@requires_data("ptb")
def test_ptb_text_read_as_raw_text_comes_back_unchanged():
    """Mikolov's own lines, given as raw sentences, are spelt exactly as they are written: the
    normalisation agrees with the corpus (numbers, contractions, abbreviations, $, &, <unk>)."""
    vocab = set((DATA_DIR / "ptb" / "train.txt").read_text().split()) | {"<eos>"}
    lines = [line.split() for line in (DATA_DIR / "ptb" / "valid.txt").read_text().splitlines() if line.strip()]
    style = detect_style(vocab)
    changed = [(line, words) for line in lines if (words := normalize(" ".join(line), style, vocab)) != line]
    assert not changed, f"{len(changed)} of {len(lines)} lines spelt differently, e.g. {changed[:2]}"


@requires_data("wikitext-2")
def test_wikitext_text_detokenised_comes_back_unchanged():
    """WikiText-2 lines without <unk>, written back as plain text (role-playing, 1,000, 3.5, don't),
    are spelt as the corpus writes them."""
    vocab = set((DATA_DIR / "wikitext-2" / "train.txt").read_text(encoding="utf-8").split()) | {"<eos>"}
    lines = [
        line.split() for line in (DATA_DIR / "wikitext-2" / "valid.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("=") and "<unk>" not in line
    ]  # fmt: skip
    assert len(lines) > 100

    def plain(words: list[str]) -> str:
        text = " ".join(words).replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
        return re.sub(r"(\w) '(t|s|re|ve|ll|d|m)\b", r"\1'\2", text)

    style = detect_style(vocab)
    changed = [(line, words) for line in lines if (words := normalize(plain(line), style, vocab)) != line]
    assert not changed, f"{len(changed)} of {len(lines)} lines spelt differently, e.g. {changed[:1]}"


def test_encode_reads_unknown_words_as_unk_and_lists_them():
    index = {w: i for i, w in enumerate(PTB_WORDS)}
    assert encode(["the", "zebra", "cat", "zebra"], index) == ([2, 1, 3, 1], ["zebra", "zebra"])
    with pytest.raises(KeyError, match="zebra.*no <unk>"):
        encode(["zebra"], {"the": 0})


# ----------------------------------------------------------------------------- trees
def test_trees_split_the_last_layers_distances_of_eos_words_eos(capsys, checkpoints):
    out = records(capsys, checkpoints["ptb"], *SENTENCES)
    assert [r["line"] for r in out] == [1, 2, 3, 4, 5]
    for record in out:
        assert record["layer"] == TINY.n_layers
        expected = reference_distances(checkpoints["ptb"], record["words"])
        torch.testing.assert_close(torch.tensor(record["distances"]), torch.tensor(expected), atol=1e-5, rtol=0)
        assert from_bracketed(record["tree"]) == split_tree(record["distances"][-1], record["words"])


def test_layer_option_picks_the_layer(capsys, checkpoints):
    for record in records(capsys, checkpoints["ptb"], *SENTENCES, "--layer", "1"):
        assert record["layer"] == 1
        assert from_bracketed(record["tree"]) == split_tree(record["distances"][0], record["words"])


def test_words_and_unknown_words_per_sentence(capsys, checkpoints):
    out = records(capsys, checkpoints["ptb"], "The zebra sat on the mat.", "Stocks fell 3% on Monday, didn't they?")
    assert out[0]["words"] == ["the", "zebra", "sat", "on", "the", "mat"]
    assert out[0]["oov"] == ["zebra"]
    assert out[1]["words"] == ["stocks", "fell", "N", "N", "on", "monday", "did", "n't", "they"]
    assert out[1]["oov"] == []


def test_a_cased_vocabulary_with_punctuation_keeps_both(capsys, checkpoints):
    (record,) = records(capsys, checkpoints["wiki"], "The cat (role-playing) sat.")
    assert record["words"] == ["The", "cat", "(", "role", "@-@", "playing", ")", "sat", "."]
    assert record["oov"] == []
    assert "-LRB-" in record["tree"] and "-RRB-" in record["tree"]  # brackets as words, escaped
    assert from_bracketed(record["tree"].replace("-LRB-", "LRB").replace("-RRB-", "RRB")) is not None


def test_tokenized_input_is_split_on_spaces_only(capsys, checkpoints):
    (record,) = records(capsys, checkpoints["ptb"], "--tokenized", "The cat , N")
    assert record["words"] == ["The", "cat", ",", "N"]
    assert record["oov"] == ["The", ","]


def test_text_output_has_tree_drawing_and_distances(capsys, checkpoints):
    code, out, _ = parse(capsys, checkpoints["ptb"], "The zebra sat on the mat.", "--distances", "--quiet")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "[1] The zebra sat on the mat."
    assert lines[1] == "words: the zebra sat on the mat"
    assert lines[2] == "read as <unk>: zebra"
    assert lines[3].startswith("layer 2: (")
    drawn = lines[lines.index("distances (1 - mean master forget gate):") - 1]
    assert drawn.split() == ["the", "zebra", "sat", "on", "the", "mat"]  # the drawing's bottom row
    assert [line.split()[:2] for line in lines[-3:-1]] == [["layer", "1"], ["layer", "2"]]


def test_drawing_keeps_word_order():
    """nltk's printer, given words, numbers a node's own words before its subtrees' ones."""
    drawn = parse_sentences.drawing(from_bracketed("(fell ((N N) on))"))
    assert drawn.splitlines()[-1].split() == ["fell", "N", "N", "on"]
    assert parse_sentences.drawing("word") == "word"


def test_figure_writes_one_png_per_sentence(capsys, checkpoints, tmp_path):
    out = records(capsys, checkpoints["ptb"], "The cat sat.", "Dogs bark.", "--figure", tmp_path / "gates")
    for record in out:
        path = Path(record["figure"])
        assert path == tmp_path / "gates" / f"line{record['line']:05d}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- input sources
def test_file_lines_skip_and_count_empty_ones(capsys, checkpoints, tmp_path):
    text = tmp_path / "sentences.txt"
    text.write_text("The cat sat.\n\n  \nDogs bark.\n...\n")
    code, out, err = parse(capsys, checkpoints["ptb"], "--file", text, "--jsonl")
    assert code == 0
    assert [json.loads(line)["line"] for line in out.splitlines()] == [1, 4]
    assert "2 sentences parsed" in err
    assert "2 empty lines skipped (line 2, 3)" in err
    assert "1 line(s) without a word after normalisation skipped (line 5)" in err


@pytest.mark.parametrize("file_arg", [[], ["--file", "-"]])
def test_standard_input(capsys, checkpoints, monkeypatch, file_arg):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("The cat sat.\nDogs bark.\n".encode())))
    out = records(capsys, checkpoints["ptb"], *file_arg)
    assert [r["text"] for r in out] == ["The cat sat.", "Dogs bark."]


def test_batched_equals_one_sentence_at_a_time(capsys, checkpoints, monkeypatch):
    calls = []
    original = parse_sentences.word_gate_distances

    def counting(model, ids):
        calls.append(len(ids))
        return original(model, ids)

    one_by_one = records(capsys, checkpoints["ptb"], *SENTENCES, "--batch-size", "1")
    monkeypatch.setattr(parse_sentences, "word_gate_distances", counting)
    batched = records(capsys, checkpoints["ptb"], *SENTENCES, "--batch-size", "2")
    assert calls == [2, 2, 1]  # five sentences in three padded batches
    for a, b in zip(one_by_one, batched):
        assert a["tree"] == b["tree"]
        torch.testing.assert_close(torch.tensor(a["distances"]), torch.tensor(b["distances"]), atol=1e-5, rtol=0)


def test_module_reads_stdin_writes_json_lines_and_shows_progress(checkpoints):
    """As a user runs it: a process, lines piped in; stdout stays clean JSON, the bar goes to stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.reports.parse_sentences", str(checkpoints["ptb"]), "--jsonl"],
        input="The cat sat.\n\nDogs bark.\n", cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["words"] for line in proc.stdout.splitlines()] == [["the", "cat", "sat"], ["dogs", "bark"]]
    assert "2/2" in proc.stderr and "1 empty line skipped (line 2)" in proc.stderr


def test_quiet_writes_nothing_to_stderr(capsys, checkpoints):
    code, out, err = parse(capsys, checkpoints["ptb"], "The cat sat.", "--quiet")
    assert code == 0 and out and err == ""


# ----------------------------------------------------------------------------- the layer of a parsing run
def parsing_run(folder: Path, metrics: str, ckpt_path: str | None = None) -> Path:
    (folder / "csv").mkdir(parents=True)
    (folder / "csv" / "metrics.csv").write_text(metrics)
    if ckpt_path is not None:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "config.yaml").write_text(f"ckpt_path: {ckpt_path}\n")
    return folder


def test_layer_from_a_parsing_run(capsys, checkpoints, tmp_path):
    run = parsing_run(tmp_path / "run", "epoch,test/chosen_layer,test/best_layer\n0,1,2\n", str(checkpoints["ptb"]))
    code, out, err = parse(capsys, checkpoints["ptb"], *SENTENCES, "--layer-from", run, "--jsonl", "--distances")
    assert code == 0, err
    for record in map(json.loads, out.splitlines()):
        assert record["layer"] == 1
        assert from_bracketed(record["tree"]) == split_tree(record["distances"][0], record["words"])
    assert f"layer 1 (chosen on development trees by {run})" in err
    assert "warning" not in err


def test_layer_from_a_run_of_another_checkpoint_warns(capsys, checkpoints, tmp_path):
    run = parsing_run(tmp_path / "run", "test/chosen_layer\n2\n", "/elsewhere/lm.ckpt")
    code, _, err = parse(capsys, checkpoints["ptb"], "The cat sat.", "--layer-from", run)
    assert code == 0
    assert "warning: the layer was chosen for /elsewhere/lm.ckpt" in err


@pytest.mark.parametrize(
    "metrics, message",
    [
        (None, "no csv/metrics.csv"),
        ("epoch,test/best_layer\n0,2\n", "metrics.csv: no value of test/chosen_layer"),
        ("test/chosen_layer\n1.5\n", "test/chosen_layer is 1.5, not a layer number"),
        ("test/chosen_layer\n3\n", "gives layer 3, but"),
    ],
)
def test_layer_from_errors_name_the_file_and_key(capsys, checkpoints, tmp_path, metrics, message):
    run = tmp_path / "run"
    if metrics is None:
        run.mkdir()
    else:
        parsing_run(run, metrics)
    code, out, err = parse(capsys, checkpoints["ptb"], "The cat sat.", "--layer-from", run)
    assert code == 2 and out == ""
    assert message in err and str(run) in err


# ----------------------------------------------------------------------------- the page
def test_html_draws_each_sentences_tree_without_gold(capsys, checkpoints, tmp_path):
    """--html FILE: one row per sentence, in input order, its induced tree over its words (the trees
    printed as text), no gold column, the layer at the top (break: leave the page out, or draw the
    trees of another layer)."""
    page_path = tmp_path / "pages" / "trees.html"
    out = records(capsys, checkpoints["ptb"], *SENTENCES, "--layer", "1", "--html", page_path)
    page = page_path.read_text(encoding="utf-8")
    svgs = re.findall(r'<svg class="([^"]+)".*?</svg>', page, re.S)
    assert svgs == ["tree induced"] * len(SENTENCES)
    drawn = [[html.unescape(word) for word in re.findall(r'<text class="leaf"[^>]*>([^<]*)</text>', svg)]
             for svg in re.findall(r"<svg.*?</svg>", page, re.S)]
    assert drawn == [r["words"] for r in out]
    titles = [from_bracketed(html.unescape(t)) for t in re.findall(r"<title>(\(.*?\))</title>", page)]
    assert titles == [from_bracketed(r["tree"]) for r in out]  # the tree drawn is the tree printed
    assert f"{len(SENTENCES)} sentences · trees of layer 1" in page and "gold tree" not in page
    assert "The cat sat on the mat." in page and f"language model: {checkpoints['ptb']}" in page


@needs_browser
def test_the_html_page_shows_every_tree_in_a_browser(capsys, checkpoints, tmp_path, browser):
    page_path = tmp_path / "trees.html"
    out = records(capsys, checkpoints["wiki"], *SENTENCES, "--html", page_path)
    open_tree_page(browser, page_path)
    check_drawn_trees(drawn_trees(browser), [r["words"] for r in out])


# ----------------------------------------------------------------------------- errors
def test_errors_say_what_is_wrong(capsys, checkpoints, tmp_path, monkeypatch):
    ptb = checkpoints["ptb"]
    corrupt = tmp_path / "truncated.ckpt"
    corrupt.write_bytes(ptb.read_bytes()[:5000])
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("The cat sat.\ncaf\xe9\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    cases = [
        ([tmp_path / "missing.ckpt", "The cat."], f"checkpoint not found: {tmp_path / 'missing.ckpt'}"),
        ([corrupt, "The cat."], f"{corrupt}: not a readable checkpoint"),
        ([checkpoints["lstm"], "The cat."], "an 'lstm' language model has no master forget gate"),
        ([ptb, "The cat.", "--layer", "3"], f"--layer gives layer 3, but {ptb} has layers 1..2"),
        ([ptb, "--file", tmp_path / "nope.txt"], f"--file {tmp_path / 'nope.txt'}: no such file"),
        ([ptb, "--file", latin1], f"{latin1}:2: not UTF-8 text"),
        ([ptb, "--file", empty], f"no sentence to parse in {empty}: 2 line(s)"),
        ([ptb, "The cat.", "--file", empty], "give sentences as arguments or --file, not both"),
        ([ptb, "The cat.", "--batch-size", "0"], "--batch-size must be at least 1"),
        ([ptb, "The cat.", "--layer-from", tmp_path / "norun"], f"--layer-from {tmp_path / 'norun'}: no such folder"),
        ([ptb, "The cat.", "--html", tmp_path], f"--html {tmp_path} is a folder; give the name of the HTML file to write"),
        ([ptb, "The cat.", "--html", empty / "trees.html"], f"--html {empty / 'trees.html'}: {empty} is a file, not a folder"),
        ([tmp_path, "The cat."], f"{tmp_path}: no config.json, no model.safetensors, no vocab.txt in the folder"),
    ]
    for argv, message in cases:
        code, out, err = parse(capsys, *argv)
        assert (code, out) == (2, ""), argv
        assert err.startswith("onlstm-parse: error: ") and message in err, (argv, err)


def test_no_input_at_a_terminal_is_an_error(capsys, checkpoints, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    code, _, err = parse(capsys, checkpoints["ptb"])
    assert code == 2 and "nothing to parse: give sentences as arguments, --file FILE, or pipe lines" in err


def test_layer_and_layer_from_exclude_each_other(capsys, checkpoints, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        parse_sentences.main([str(checkpoints["ptb"]), "x", "--layer", "1", "--layer-from", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err

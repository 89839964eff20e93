"""``onlstm-parse``: constituency trees of your own sentences from a trained ON-LSTM language model.

    onlstm-parse lm.ckpt "The cat sat on the mat." "Stocks fell 3% on Monday."
    onlstm-parse onlstm-ptb/ "The cat sat on the mat."   (a model folder that onlstm-export wrote)
    onlstm-parse lm.ckpt --file sentences.txt --jsonl > trees.jsonl
    onlstm-parse lm.ckpt --file sentences.txt --html trees.html   (the trees drawn, to open in a browser)
    cat sentences.txt | onlstm-parse lm.ckpt --layer-from logs/parsing/runs/<run> --distances --figure gates/
    python -m tasks.reports.parse_sentences ...      (the same, without the console script)

One sentence per argument or per line (``--file``, or standard input when neither is given). Each
is tokenised and spelt as the checkpoint's training text spells words (:mod:`onlstm.parsing.text`; or
taken as it is with ``--tokenized``), words outside the vocabulary are read as ``<unk>`` and
listed, and the LM reads ``<eos> words <eos>`` exactly as ``task=parsing`` feeds treebank
sentences (:func:`onlstm.parsing.inference.word_gate_distances`): the master-forget-gate
distances of the chosen layer are split top-down into a binary tree
(:func:`onlstm.parsing.trees.split_tree`). Sentences run in padded batches (``--batch-size``), which give
the numbers of one sentence at a time (``onlstm.parsing.inference``).

The layer: ``--layer K`` (1-based, as the paper's "layer 2"), or ``--layer-from RUN`` for the
layer a ``task=parsing`` run chose on development trees (``test/chosen_layer`` in
``RUN/csv/metrics.csv``), else the last layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from onlstm.checkpoints import LOAD_ERRORS, load_language_model
from onlstm.parsing.inference import word_gate_distances
from onlstm.parsing.text import detect_style, encode, normalize
from onlstm.parsing.tree_page import PageHeader, TreeRecord, render_tree_page
from onlstm.parsing.trees import Tree, split_tree, to_bracketed
from tasks.jobs import run_folder

PROG = "onlstm-parse"
EOS = "<eos>"
CHOSEN_LAYER = "test/chosen_layer"
# to_bracketed's brackets must not be words: the Penn Treebank's escapes for WikiText-2's ( and )
BRACKET_ESCAPES = {"(": "-LRB-", ")": "-RRB-"}


class ParseTextError(Exception):
    """A problem with the command's input; the message names the file, line or option and what to do."""


@dataclass
class Sentence:
    line: int  # 1-based line of the file / stdin, or position among the sentence arguments
    text: str
    words: list[str]
    ids: list[int]
    oov: list[str]
    distances: list[list[float]] = field(default_factory=list)  # (layers, words)
    distances_in: list[list[float]] = field(default_factory=list)


@dataclass
class Skipped:
    empty: list[int] = field(default_factory=list)  # blank lines
    no_words: list[int] = field(default_factory=list)  # only punctuation the vocabulary drops


# ----------------------------------------------------------------------------- input
def read_lines(args: argparse.Namespace) -> tuple[str, list[tuple[int, str]]]:
    """(where the sentences came from, [(line number, text)])."""
    if args.sentences and args.file:
        raise ParseTextError("give sentences as arguments or --file, not both")
    if args.sentences:
        return "arguments", list(enumerate(args.sentences, start=1))
    if args.file and args.file != "-":
        path = Path(args.file)
        if not path.is_file():
            raise ParseTextError(f"--file {path}: no such file; give a text file with one sentence per line")
        return str(path), _decode(path.read_bytes(), str(path))
    if args.file is None and sys.stdin.isatty():
        raise ParseTextError("nothing to parse: give sentences as arguments, --file FILE, or pipe lines to standard input")
    return "standard input", _decode(sys.stdin.buffer.read(), "standard input")


def _decode(data: bytes, where: str) -> list[tuple[int, str]]:
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError as err:
            raise ParseTextError(f"{where}:{number}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    return lines


def prepare(
    lines: Sequence[tuple[int, str]], vocab: Sequence[str], tokenized: bool, source: str = "input"
) -> tuple[list[Sentence], Skipped]:
    """Words and ids of every non-empty line; blank lines and lines left without words are counted."""
    index = {word: i for i, word in enumerate(vocab)}
    style = detect_style(vocab)
    eos = index[EOS]
    sentences, skipped = [], Skipped()
    for number, text in lines:
        if not text.strip():
            skipped.empty.append(number)
            continue
        words = text.split() if tokenized else normalize(text, style, index)
        if not words:
            skipped.no_words.append(number)
            continue
        try:
            ids, oov = encode(words, index)
        except KeyError as error:
            raise ParseTextError(f"{source}, line {number}: {error.args[0]}; use words of the vocabulary") from None
        sentences.append(Sentence(number, text.strip(), words, [eos, *ids, eos], oov))
    return sentences, skipped


# ----------------------------------------------------------------------------- layer
def read_chosen_layer(run: Path) -> int:
    """``test/chosen_layer`` of a ``task=parsing`` run (its last logged value)."""
    metrics = run_folder.metrics_path(run)
    if not run.is_dir():
        raise ParseTextError(f"--layer-from {run}: no such folder; give the folder of a task=parsing run")
    if not metrics.is_file():
        raise ParseTextError(
            f"--layer-from {run}: no {metrics.relative_to(run)}; give the folder of a task=parsing run "
            "logged with logger=csv (logs/parsing/runs/<time>), or pass --layer K"
        )
    value = next((row[CHOSEN_LAYER] for row in reversed(run_folder.read_metrics(run)) if CHOSEN_LAYER in row), None)
    if value is None:
        raise ParseTextError(
            f"{metrics}: no value of {CHOSEN_LAYER} (the layer chosen on development trees); the run is not "
            "a parsing run, or older than that metric: rerun it, or pass --layer K"
        )
    if not value.is_integer():
        raise ParseTextError(f"{metrics}: {CHOSEN_LAYER} is {value:g}, not a layer number")
    return int(value)


def choose_layer(args: argparse.Namespace, n_layers: int, warn) -> tuple[int, str]:
    """(1-based layer, why this one)."""
    if args.layer is not None:
        layer, why = args.layer, "--layer"
    elif args.layer_from is not None:
        run = Path(args.layer_from)
        layer, why = read_chosen_layer(run), f"chosen on development trees by {run}"
        parsed = run_folder.config_value(run, "ckpt_path")  # the checkpoint the parsing run evaluated
        if parsed and Path(parsed).resolve() != Path(args.checkpoint).resolve():
            warn(f"the layer was chosen for {parsed}, and is applied to {args.checkpoint}")
    else:
        layer, why = n_layers, "the last layer"
    if not 1 <= layer <= n_layers:
        source = "--layer" if args.layer is not None else f"--layer-from {args.layer_from}"
        raise ParseTextError(f"{source} gives layer {layer}, but {args.checkpoint} has layers 1..{n_layers}")
    return layer, why


# ----------------------------------------------------------------------------- gates, batched
def batches(sentences: Sequence[Sentence], batch_size: int) -> Iterator[list[Sentence]]:
    """Groups of similar length (sorted), so that the padded batches waste little."""
    ordered = sorted(sentences, key=lambda s: len(s.ids))
    for start in range(0, len(ordered), batch_size):
        yield ordered[start : start + batch_size]


def compute_distances(model, sentences: Sequence[Sentence], batch_size: int, progress: bool, err=None) -> None:
    """Each sentence's (layers, words) distances, in padded batches of ``batch_size``."""
    bar = tqdm(total=len(sentences), desc=PROG, unit="sentence", file=err or sys.stderr, disable=not progress)
    with bar:
        for group in batches(sentences, batch_size):
            gates = word_gate_distances(model, [s.ids for s in group])
            for sentence, (forget, inp) in zip(group, gates):
                sentence.distances, sentence.distances_in = forget.tolist(), inp.tolist()
            bar.update(len(group))


# ----------------------------------------------------------------------------- output
def bracketed(tree: Tree) -> str:
    if isinstance(tree, str):
        return BRACKET_ESCAPES.get(tree, tree)
    return to_bracketed(_escape(tree))


def _escape(tree: Tree) -> Tree:
    return BRACKET_ESCAPES.get(tree, tree) if isinstance(tree, str) else [_escape(child) for child in tree]


def drawing(tree: Tree) -> str:
    """The tree as ASCII art (nltk's pretty printer); ``*`` marks a constituent (they carry no label).

    The leaves go to the printer as word positions with the words beside them: given the words
    themselves, it numbers a node's own words before those of the subtrees under it, and draws
    ``((N N) on)`` as ``on N N``."""
    from nltk import Tree as NltkTree
    from nltk.tree.prettyprinter import TreePrettyPrinter

    if isinstance(tree, str):
        return tree
    words: list[str] = []

    def convert(node: Tree):
        if isinstance(node, str):
            words.append(node)
            return len(words) - 1
        return NltkTree("*", [convert(child) for child in node])

    converted = convert(tree)
    text = TreePrettyPrinter(converted, sentence=words).text()
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def distance_table(sentence: Sentence) -> str:
    widths = [max(len(w), 5) for w in sentence.words]
    header = " " * 8 + " ".join(w.rjust(n) for w, n in zip(sentence.words, widths))
    rows = [
        f"layer {k + 1:<2}" + " ".join(f"{d:.3f}".rjust(n) for d, n in zip(layer, widths))
        for k, layer in enumerate(sentence.distances)
    ]
    return "\n".join([header, *rows])


def write_figure(folder: Path, sentence: Sentence) -> Path:
    from onlstm.figures import gate_figure  # matplotlib: only with --figure

    path = folder / f"line{sentence.line:05d}.png"
    figure = gate_figure(sentence.words, sentence.distances, sentence.distances_in, f"line {sentence.line}: {sentence.text}")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def text_block(sentence: Sentence, tree: Tree, layer: int, show_distances: bool, figure: Path | None) -> str:
    lines = [
        f"[{sentence.line}] {sentence.text}",
        "words: " + " ".join(sentence.words),
        "read as <unk>: " + (" ".join(sentence.oov) if sentence.oov else "-"),
        f"layer {layer}: {bracketed(tree)}",
        drawing(tree),
    ]
    if show_distances:
        lines += ["distances (1 - mean master forget gate):", distance_table(sentence)]
    if figure is not None:
        lines.append(f"figure: {figure}")
    return "\n".join(lines) + "\n"


def json_record(sentence: Sentence, tree: Tree, layer: int, show_distances: bool, figure: Path | None) -> str:
    record = {
        "line": sentence.line,
        "text": sentence.text,
        "words": sentence.words,
        "oov": sentence.oov,
        "layer": layer,
        "tree": bracketed(tree),
    }
    if show_distances:
        record["distances"] = sentence.distances
        record["distances_in"] = sentence.distances_in
    if figure is not None:
        record["figure"] = str(figure)
    return json.dumps(record, ensure_ascii=False)


def html_path(args: argparse.Namespace) -> Path | None:
    """Where ``--html`` writes the page (its folder made when missing); checked before any parsing."""
    if args.html is None:
        return None
    path = Path(args.html)
    if path.is_dir():
        raise ParseTextError(f"--html {path} is a folder; give the name of the HTML file to write, e.g. {path / 'trees.html'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise ParseTextError(f"--html {path}: {path.parent} is a file, not a folder")
    return path


def write_tree_page(path: Path, sentences: Sequence[Sentence], trees: Sequence[Tree], layer: int, why: str,
                    checkpoint: str) -> Path:
    """The induced trees drawn, one row per sentence (no gold tree: these are your own sentences)."""
    records = [TreeRecord(f"line {s.line}", s.words, tree, text=s.text) for s, tree in zip(sentences, trees)]
    header = PageHeader(f"{PROG}: {checkpoint}", layer=layer, notes=[f"language model: {checkpoint}", f"layer {layer}: {why}"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_tree_page(records, header), encoding="utf-8")
    return path


def summary(n_parsed: int, layer: int, why: str, skipped: Skipped, sentences: Sequence[Sentence]) -> str:
    parts = [f"{n_parsed} sentence{'s' * (n_parsed != 1)} parsed with layer {layer} ({why})"]
    if skipped.empty:
        parts.append(f"{len(skipped.empty)} empty line{'s' * (len(skipped.empty) != 1)} skipped ({_numbers(skipped.empty)})")
    if skipped.no_words:
        parts.append(f"{len(skipped.no_words)} line(s) without a word after normalisation skipped ({_numbers(skipped.no_words)})")
    with_oov = [s for s in sentences if s.oov]
    if with_oov:
        parts.append(f"{sum(len(s.oov) for s in with_oov)} word(s) read as <unk> in {len(with_oov)} sentence(s)")
    return f"{PROG}: " + "; ".join(parts)


def _numbers(lines: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return f"line {shown}" + (f", ... ({len(lines) - limit} more)" if len(lines) > limit else "")


# ----------------------------------------------------------------------------- command
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Unsupervised constituency trees of raw sentences from a trained ON-LSTM language model "
        "(the master forget gate's distances, split top-down; Shen et al. 2019, Section 5.1).",
        epilog="Sentences: arguments, --file, or standard input; one per line. Empty lines are skipped and counted.",
    )
    parser.add_argument(
        "checkpoint",
        help="a task=lm checkpoint of an ON-LSTM (e.g. logs/lm/runs/<time>/checkpoints/last.ckpt) or a model folder "
        "that onlstm-export wrote",
    )
    parser.add_argument("sentences", nargs="*", help="sentences to parse (else --file or standard input)")
    parser.add_argument("--file", "-f", help="a UTF-8 text file, one sentence per line ('-': standard input)")
    layer = parser.add_mutually_exclusive_group()
    layer.add_argument("--layer", "-l", type=int, help="the layer whose distances make the tree, 1-based (default: the last)")
    layer.add_argument(
        "--layer-from", metavar="RUN", help=f"a task=parsing run folder: use its {CHOSEN_LAYER} (chosen on development trees)"
    )
    parser.add_argument("--tokenized", action="store_true", help="input is already in the vocabulary's spelling: split on spaces only")
    parser.add_argument("--distances", action="store_true", help="also print every layer's per-word distances")
    parser.add_argument("--figure", metavar="DIR", help="write a PNG of the gate distances of each sentence into DIR")
    parser.add_argument("--jsonl", action="store_true", help="one JSON object per sentence, for scripts")
    parser.add_argument("--html", metavar="FILE", help="also write the trees drawn into one HTML page (opens from disk)")
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per padded batch (default 128)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary on standard error")
    return parser


def parse(args: argparse.Namespace, out=None, err=None) -> int:
    """The command; ``out`` / ``err`` default to the streams current at the call."""
    out, err = out or sys.stdout, err or sys.stderr
    if args.batch_size < 1:
        raise ParseTextError(f"--batch-size must be at least 1, got {args.batch_size}")

    def warn(message: str) -> None:
        print(f"{PROG}: warning: {message}", file=err)

    page = html_path(args)
    source, lines = read_lines(args)
    loaded = load_language_model(args.checkpoint)
    if loaded.config.arch != "onlstm":
        raise ParseTextError(
            f"{args.checkpoint}: an {loaded.config.arch!r} language model has no master forget gate to parse with; "
            "give the checkpoint (or model folder) of an ON-LSTM (trained with model=onlstm)"
        )
    if EOS not in loaded.vocab:
        raise ParseTextError(f"{args.checkpoint}: the vocabulary has no {EOS}, which starts and ends every sentence")
    layer, why = choose_layer(args, loaded.config.n_layers, warn)
    sentences, skipped = prepare(lines, loaded.vocab, args.tokenized, source)
    if not sentences:
        raise ParseTextError(f"no sentence to parse in {source}: {len(lines)} line(s), all empty or without a word")

    figure_dir = Path(args.figure) if args.figure else None
    if figure_dir is not None:
        figure_dir.mkdir(parents=True, exist_ok=True)
    compute_distances(loaded.model, sentences, args.batch_size, progress=not args.quiet, err=err)

    trees = [split_tree(sentence.distances[layer - 1], sentence.words) for sentence in sentences]
    for sentence, tree in zip(sentences, trees):  # input order
        figure = write_figure(figure_dir, sentence) if figure_dir is not None else None
        if args.jsonl:
            print(json_record(sentence, tree, layer, args.distances, figure), file=out)
        else:
            print(text_block(sentence, tree, layer, args.distances, figure), file=out)
    if page is not None:
        write_tree_page(page, sentences, trees, layer, why, args.checkpoint)
    if not args.quiet:
        print(summary(len(sentences), layer, why, skipped, sentences), file=err)
        if page is not None:
            print(f"{PROG}: the trees drawn: {page}", file=err)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # intermixed: sentences may come after options (`onlstm-parse lm.ckpt --layer 2 "A sentence."`)
    args = build_parser().parse_intermixed_args(argv)
    try:
        return parse(args)
    except (ParseTextError, *LOAD_ERRORS) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The Penn Treebank reader (datamodules/treebank.py) on tiny hand-written trees: the words, gold
trees and labeled spans a tree gives, which files fall in which split, the batches, and the errors
that name the file, the line and the fix. Every expected value is derived by hand in the test."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from datamodules.files import DataError
from datamodules.treebank import TreebankDataModule, read_treebank, select_files


def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return folder


def one_word_trees(*words: str) -> str:
    return "".join(f"( (S (NN {word}) (. .) ))\n" for word in words)


def words_tree(*words: str) -> str:
    """One tree whose words are ``words`` (each an NN), flat under S."""
    return "( (S " + " ".join(f"(NN {word})" for word in words) + " (. .) ))\n"


GOOD = "( (S (NP-SBJ (DT The) (NN cat) ) (VP (VBD sat) ) (. .) ))\n"
UNBALANCED = "( (S (NP-SBJ (DT The) (NN dog) ) (VP (VBD barked) ) (. .) )\n"  # one ')' short


# ----------------------------------------------------------------------------- words, gold, spans
PREPROCESSED = """\
( (S
    (`` ``)
    (NP-SBJ-1 (NNP Mr.) (NNP Smith) )
    (, ,)
    (VP (VBD paid)
      (NP
        (NP ($ $) (CD 3.50) (-NONE- *U*) )
        (PP-CLR (IN for)
          (NP (CD 12) (NNS Shares) ))))
    (: --)
    (. .)
    ('' '') ))
"""


def test_words_gold_tree_and_labeled_spans_of_a_tree_by_hand(tmp_path):
    """Punctuation (`` , : . ''), ``$`` and the empty element are dropped; words are lower-cased
    and digit runs become N ("3.50" -> "N.N", "12" -> "N"). Kept words: mr. smith paid N.N for N
    shares (positions 0..6). Gold: the ($ 3.50 *U*) NP keeps one word, so it collapses to "N.N".
    Labeled spans (phrases over two or more kept words, function tags cut, sorted): NP-SBJ-1 (0,2),
    VP (2,7), the outer NP (3,7), PP-CLR (4,7), NP "12 shares" (5,7), S (0,7); the inner NP covers
    one word and gives none."""
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": PREPROCESSED})
    (sentence,) = read_treebank(folder)
    assert (sentence.file, sentence.number, sentence.split) == ("wsj_0001.mrg", 1, "test")
    assert sentence.words == ["mr.", "smith", "paid", "N.N", "for", "N", "shares"]
    assert sentence.gold == [["mr.", "smith"], ["paid", ["N.N", ["for", ["N", "shares"]]]]]
    assert sentence.labeled == [("NP", 0, 2), ("NP", 3, 7), ("NP", 5, 7), ("PP", 4, 7), ("S", 0, 7), ("VP", 2, 7)]


def test_a_labeled_root_with_one_child_is_kept(tmp_path):
    """Only the PTB's unlabeled top bracket is stripped: a tree written without it, whose root S
    has a single child VP, keeps S as a phrase over the same two words as the VP."""
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": "(S (VP (VBD sat) (ADVP (RB down))))\n"})
    (sentence,) = read_treebank(folder)
    assert sentence.words == ["sat", "down"]
    assert sentence.labeled == [("S", 0, 2), ("VP", 0, 2)]


def test_an_unlabeled_top_bracket_with_two_children_keeps_both(tmp_path):
    """An unlabeled bracket around two phrases is not the one-child top bracket: both phrases stay
    (words "the cat sat"); having no label, it adds no labeled span over the whole sentence."""
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": "( (NP (DT the) (NN cat)) (VP (VBD sat)) )\n"})
    (sentence,) = read_treebank(folder)
    assert sentence.words == ["the", "cat", "sat"]
    assert sentence.gold == [["the", "cat"], "sat"]
    assert sentence.labeled == [("NP", 0, 2)]


def test_trees_without_a_word_are_skipped_and_counted_in_the_log(tmp_path, caplog):
    """Trees 1 and 3 hold only punctuation / an empty element: the one sentence kept is tree 2."""
    text = "( (S (. .) ))\n" + GOOD + "( (S (-NONE- *) (, ,) ))\n"
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": text})
    with caplog.at_level(logging.INFO, logger="datamodules.treebank"):
        sentences = read_treebank(folder)
    assert [(s.number, s.words) for s in sentences] == [(2, ["the", "cat", "sat"])]
    assert "skipped 2 trees without any word (punctuation or empty elements only)" in caplog.messages

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="datamodules.treebank"):
        read_treebank(write_files(tmp_path / "clean", {"wsj_0001.mrg": GOOD}))
    assert not [m for m in caplog.messages if m.startswith("skipped")]  # nothing skipped, nothing said


def test_a_treebank_without_any_word_is_a_data_error(tmp_path):
    """The message names the first three files read (break seen failing: four named)."""
    no_word = "( (S (. .) ))\n( (S (-NONE- *) ))\n"
    folder = write_files(tmp_path / "tb", {f"wsj_000{k}.mrg": no_word for k in range(1, 5)})
    with pytest.raises(DataError) as info:
        read_treebank(folder)
    assert str(info.value) == (f"the treebank files ['wsj_0001.mrg', 'wsj_0002.mrg', 'wsj_0003.mrg']... under {folder} "
                               "hold no sentence with a word")


# ----------------------------------------------------------------------------- files and splits
def test_the_default_pattern_reads_wsj_files_in_any_case_and_folder_only(tmp_path):
    """The default file pattern matches wsj_NNNN.mrg as the whole name, in upper or lower case, in
    sub-folders too; a backup copy, a name that only ends in wsj_NNNN.mrg or a README is not read
    (all hold a good tree, so reading one would show)."""
    folder = write_files(
        tmp_path / "tb",
        {
            "WSJ_0101.MRG": GOOD,
            "01/wsj_0102.mrg": GOOD,
            "wsj_0103.mrg.bak": GOOD,
            "notwsj_0104.mrg": GOOD,
            "README": GOOD,
        },
    )
    assert sorted({s.file for s in read_treebank(folder)}) == ["01/wsj_0102.mrg", "WSJ_0101.MRG"]


def test_select_files_keeps_the_sections_at_their_boundaries():
    """wsj_SSNN.mrg is section SS: wsj_0100 and wsj_0199 are section 01, wsj_0099 is 00, wsj_0200 is 02."""
    fileids = ["wsj_0099.mrg", "wsj_0100.mrg", "wsj_0199.mrg", "wsj_0200.mrg", "00/wsj_0001.mrg", "README"]
    assert select_files(fileids, [1]) == ["wsj_0100.mrg", "wsj_0199.mrg"]
    assert select_files(fileids, [0, 2]) == ["wsj_0099.mrg", "wsj_0200.mrg", "00/wsj_0001.mrg"]
    assert select_files(fileids, []) == []
    assert select_files(fileids, None) == fileids  # no sections: every file the pattern matched


def test_default_splits_are_section_00_for_development_and_01_for_test(tmp_path):
    """With the defaults (the NLTK sample: wsj_0001-0099 choose the layer, wsj_0100-0199 are
    scored) section 02 is in neither set, and the development sentences come first."""
    write_files(
        tmp_path / "tb",
        {name: GOOD for name in ("wsj_0001.mrg", "wsj_0099.mrg", "wsj_0100.mrg", "wsj_0199.mrg", "wsj_0200.mrg")},
    )
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb")
    assert [(s.split, s.file) for s in dm.sentences] == [
        ("dev", "wsj_0001.mrg"),
        ("dev", "wsj_0099.mrg"),
        ("test", "wsj_0100.mrg"),
        ("test", "wsj_0199.mrg"),
    ]
    assert dm.module_kwargs() == {"max_length": 10, "has_dev_set": True}  # WSJ10 by default


def test_the_default_folder_is_the_nltk_sample_under_the_data_root(tmp_path):
    assert TreebankDataModule(data_dir=str(tmp_path)).folder == tmp_path / "treebank" / "combined"


def test_a_file_pattern_that_matches_no_path_says_it_must_match_the_whole_path(tmp_path):
    """'wsj_0001' is a prefix of the file's path, not the whole of it: nothing matches."""
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": GOOD})
    with pytest.raises(DataError) as info:
        read_treebank(folder, file_pattern="wsj_0001")
    assert str(info.value) == (
        f"no treebank file under {folder} matches file_pattern='wsj_0001'; the pattern must match the "
        "whole path relative to that folder (e.g. 23/wsj_2300.mrg)"
    )  # no "and sections=..." when no sections were asked for


def test_an_invalid_file_pattern_is_a_data_error_naming_the_option(tmp_path):
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": GOOD})
    with pytest.raises(DataError, match=re.escape("task.datamodule.file_pattern='(' is not a valid regular expression: ")):
        read_treebank(folder, file_pattern="(")


# ----------------------------------------------------------------------------- bad files
def test_a_malformed_first_tree_is_tree_1_on_line_1_of_its_own_file(tmp_path):
    """The tree count restarts in every file: the bad tree is the first of wsj_0002.mrg even
    though wsj_0001.mrg held three trees before it; nltk's reason is in the message."""
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": GOOD * 3, "wsj_0002.mrg": UNBALANCED + GOOD})
    with pytest.raises(DataError) as info:
        read_treebank(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'wsj_0002.mrg'}:1: tree 1 of the file is malformed (")
    assert "expected ')' but got 'end-of-string'" in message
    assert message.endswith("); fix its brackets or leave the file out with task.datamodule.file_pattern")


def test_a_malformed_tree_is_located_even_when_later_lines_are_not_utf8(tmp_path):
    """The reader stops at tree 2 (line 2) before it decodes the Latin-1 lines further down; the
    line search must not fail on those bytes either."""
    latin1 = "( (S (NN caf\xe9) ))\n".encode("latin-1")
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": (GOOD + UNBALANCED + GOOD * 3).encode() + latin1})
    with pytest.raises(DataError, match=re.escape(f"{folder / 'wsj_0001.mrg'}:2: tree 2 of the file is malformed")):
        read_treebank(folder)


def test_a_malformed_tree_is_located_in_a_file_that_starts_with_a_byte_order_mark(tmp_path):
    """nltk reads past a UTF-8 byte-order mark; the line search must count that first line as
    tree 1 too, or every later tree is placed one tree too late."""
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": "\ufeff" + GOOD + GOOD + UNBALANCED + GOOD})
    with pytest.raises(DataError, match=re.escape(f"{folder / 'wsj_0001.mrg'}:3: tree 3 of the file is malformed")):
        read_treebank(folder)


def test_a_malformed_tree_whose_line_cannot_be_found_is_named_by_its_file_alone(tmp_path):
    """nltk's reader splits lines at form feeds (and U+2028, NEL), Python's line iteration does not:
    trees separated by form feeds have no line to name, so the message names the file alone
    (breaks seen failing: a line always printed, the path replaced)."""
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": (GOOD + "\x0c" + UNBALANCED).replace("\n", "")})
    with pytest.raises(DataError) as info:
        read_treebank(folder)
    assert str(info.value).startswith(f"{folder / 'wsj_0001.mrg'}: tree 2 of the file is malformed (")


def test_a_file_that_is_not_utf8_is_a_data_error_saying_to_re_encode_it(tmp_path):
    folder = write_files(tmp_path / "tb", {"wsj_0001.mrg": GOOD, "wsj_0002.mrg": "( (S (NN caf\xe9) ))\n".encode("latin-1")})
    with pytest.raises(DataError) as info:
        read_treebank(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'wsj_0002.mrg'}: not valid UTF-8 (")
    assert message.endswith("); re-encode the file as UTF-8")


# ----------------------------------------------------------------------------- the data module
@pytest.mark.parametrize("max_length, batch_size", [(0, 64), (10, 0), (-1, -1)])
def test_max_length_and_batch_size_must_be_positive(tmp_path, max_length, batch_size):
    with pytest.raises(ValueError) as info:
        TreebankDataModule(data_dir=str(tmp_path), max_length=max_length, batch_size=batch_size)
    assert str(info.value) == f"max_length and batch_size must be positive, got {max_length}, {batch_size}"


def test_a_limit_of_one_word_and_batches_of_one_are_allowed(tmp_path):
    dm = TreebankDataModule(data_dir=str(tmp_path), max_length=1, batch_size=1)
    assert (dm.max_length, dm.batch_size) == (1, 1)


def test_the_vocabulary_must_hold_eos_and_unk(tmp_path):
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", sections=None, dev_sections=None)
    with pytest.raises(ValueError) as info:
        dm.use_vocabulary(["<unk>", "the"])
    assert str(info.value) == "the language model's vocabulary lacks ['<eos>']: parsing needs <eos> and <unk>"
    with pytest.raises(ValueError, match=re.escape("lacks ['<eos>', '<unk>']")):
        dm.use_vocabulary(["the"])


def test_word_ids_need_the_vocabulary_first(tmp_path):
    write_files(tmp_path / "tb", {"wsj_0001.mrg": GOOD})
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", sections=None, dev_sections=None)
    message = re.escape("call use_vocabulary(<the checkpoint's words>) before asking for word ids")
    with pytest.raises(RuntimeError, match=message):
        dm.setup("test")
    with pytest.raises(RuntimeError, match=message):
        dm.ids  # noqa: B018


def test_a_new_vocabulary_re_encodes_the_sentences(tmp_path):
    """"the cat sat" as <eos> words <eos>: with [<eos>, <unk>, the] -> 0 2 1 1 0; after a second
    vocabulary [<unk>, <eos>, cat] -> 1 0 2 0 1 (not the ids of the first one, cached)."""
    write_files(tmp_path / "tb", {"wsj_0001.mrg": GOOD})
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", sections=None, dev_sections=None)
    dm.use_vocabulary(["<eos>", "<unk>", "the"])
    assert dm.ids == [[0, 2, 1, 1, 0]]
    dm.use_vocabulary(["<unk>", "<eos>", "cat"])
    assert dm.ids == [[1, 0, 2, 0, 1]]


def test_the_log_gives_the_share_of_words_the_lm_does_not_know(tmp_path, caplog):
    """Sentences "a b c" and "d e" (5 words); the vocabulary knows b only: a, c, d, e are unknown,
    4 of 5 = 80.0%; the two <eos> around each sentence are not words and never count."""
    write_files(tmp_path / "tb", {"wsj_0001.mrg": words_tree("a", "b", "c") + words_tree("d", "e")})
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", sections=None, dev_sections=None)
    dm.use_vocabulary(["<eos>", "<unk>", "b"])
    with caplog.at_level(logging.INFO, logger="datamodules.treebank"):
        dm.setup("test")
    assert "treebank: 2 sentences, 5 words, 80.0% not in the LM vocabulary" in caplog.messages


def test_batches_hold_development_sentences_first_each_set_shortest_first(tmp_path):
    """Development file (section 00): sentences of 3, 1 and 2 words (indices 0, 1, 2); test file
    (section 01): 2 and 1 words (indices 3, 4). In batches of two: dev [1, 2], dev [0], test [4, 3]."""
    write_files(
        tmp_path / "tb",
        {
            "wsj_0001.mrg": words_tree("a", "b", "c") + words_tree("d") + words_tree("e", "f"),
            "wsj_0101.mrg": words_tree("g", "h") + words_tree("i"),
        },
    )
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", batch_size=2)
    dm.use_vocabulary(["<eos>", "<unk>", "a", "b", "c", "d", "e", "f", "g", "h", "i"])
    batches = dm.batches()
    assert [(b["split"], b["index"]) for b in batches] == [("dev", [1, 2]), ("dev", [0]), ("test", [4, 3])]
    assert batches[0] == {
        "split": "dev",
        "index": [1, 2],
        "source": ["wsj_0001.mrg#2", "wsj_0001.mrg#3"],
        "ids": [[0, 5, 0], [0, 6, 7, 0]],
        "words": [["d"], ["e", "f"]],
        "gold": ["d", ["e", "f"]],
        "labeled": [[], [("S", 0, 2)]],
    }


def test_the_loader_yields_the_batches_in_order(tmp_path):
    """Batches of one over the five sentences above: dev 1, 2, 0 then test 4, 3, in this order
    (a shuffled loader would give it once in 120 runs)."""
    write_files(
        tmp_path / "tb",
        {
            "wsj_0001.mrg": words_tree("a", "b", "c") + words_tree("d") + words_tree("e", "f"),
            "wsj_0101.mrg": words_tree("g", "h") + words_tree("i"),
        },
    )
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", batch_size=1)
    dm.use_vocabulary(["<eos>", "<unk>"])
    assert [(b["split"], b["index"]) for b in dm.test_dataloader()] == [
        ("dev", [1]),
        ("dev", [2]),
        ("dev", [0]),
        ("test", [4]),
        ("test", [3]),
    ]


def test_the_default_batch_holds_64_sentences(tmp_path):
    write_files(tmp_path / "tb", {"wsj_0001.mrg": one_word_trees(*[f"w{k}" for k in range(65)])})
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", sections=None, dev_sections=None)
    dm.use_vocabulary(["<eos>", "<unk>"])
    assert [len(b["index"]) for b in dm.batches()] == [64, 1]

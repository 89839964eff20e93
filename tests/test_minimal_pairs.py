"""The Marvin & Linzen suite reader and encoder: counts, grouping, text style, OOV, prefix sharing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from datamodules.files import DataError
from datamodules.minimal_pairs import (
    MinimalPair,
    MinimalPairsDataModule,
    SentenceBatches,
    TextStyle,
    default_group,
    encode_suite,
    load_suite,
    read_suite_file,
    resolve_style,
)
from datamodules.vocabulary import EOS, UNK, Vocabulary
from tests.helpers import DATA_DIR, requires_data

# items per reporting group, from the data README (section 4)
README_GROUPS = {
    "simple_agrmt": 140, "sent_comp": 1680, "vp_coord": 840, "long_vp_coord": 400, "prep": 21840,
    "subj_rel": 11200, "obj_rel_across": 21280, "obj_rel_no_comp_across": 21280, "obj_rel_within": 21280,
    "obj_rel_no_comp_within": 21280, "simple_reflexives": 280, "reflexive_sent_comp": 3360,
    "reflexives_across": 22400, "simple_npi": 264, "npi_across": 10560,
}  # fmt: skip


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


AGR = [
    {"category": "simple_agrmt", "group": "simple_agrmt", "condition": "sing_MS_MV", "good": "the author laughs", "bad": "the author laugh"},
    {"category": "simple_agrmt", "group": "simple_agrmt", "condition": "plur_MS_MV", "good": "the authors laugh", "bad": "the authors laughs"},
]
NPI = [
    {"category": "simple_npi_anim", "group": "simple_npi", "condition": "past", "good": "no authors have ever been popular",
     "bad": "most authors have ever been popular", "intrusive": "the authors have ever been popular"},
]  # fmt: skip


@requires_data("syneval/counts.json")
def test_whole_suite_matches_counts_json_and_readme_groups():
    suite = load_suite(DATA_DIR / "syneval")  # also checks every file against counts.json
    counts = json.loads((DATA_DIR / "syneval" / "counts.json").read_text())
    assert len(suite) == counts["total"] == 158_084
    by_category = Counter(p.category for p in suite)
    assert by_category == {name: c["total"] for name, c in counts["categories"].items()}
    for name, c in counts["categories"].items():
        assert Counter(p.condition for p in suite if p.category == name) == c["conditions"]
        assert {p.group for p in suite if p.category == name} == {c["group"]}
        assert default_group(name) == c["group"]  # the anim/inanim merge rule
    assert Counter(p.group for p in suite) == README_GROUPS
    npi = [p for p in suite if p.group in ("simple_npi", "npi_across")]
    assert len(npi) == 264 + 10560 and all(p.intrusive for p in npi)
    assert all(p.intrusive is None for p in suite if p.group not in ("simple_npi", "npi_across"))


@requires_data("syneval/counts.json")
def test_subset_and_limit_per_condition():
    suite = load_suite(DATA_DIR / "syneval", categories=["prep_inanim", "simple_agrmt"], limit_per_condition=3)
    assert Counter((p.category, p.condition) for p in suite) == {
        ("prep_inanim", "sing_IS_IV_sing_ES"): 3, ("prep_inanim", "sing_IS_IV_plur_ES"): 3,
        ("prep_inanim", "plur_IS_IV_sing_ES"): 3, ("prep_inanim", "plur_IS_IV_plur_ES"): 3,
        ("simple_agrmt", "sing_MS_MV"): 3, ("simple_agrmt", "plur_MS_MV"): 3,
    }  # fmt: skip
    with pytest.raises(DataError, match="no test case .*nonexistent"):
        load_suite(DATA_DIR / "syneval", categories=["nonexistent"])


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"good": "the author laughs", "bad": ', "not a JSON object"),
        ('{"good": "the author laughs"}', "'bad' is missing"),
        ('{"bad": "the author laugh", "good": ""}', "'good' is missing"),
        ("[1, 2]", "expected a JSON object .* got list"),
        ('{"good": "a b", "bad": "a c", "intrusive": 3}', "'intrusive' is missing or not a non-empty string"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "simple_agrmt.jsonl", [AGR[0], line])
    with pytest.raises(DataError, match=message) as err:
        load_suite(tmp_path)
    assert f"{path}:2:" in str(err.value)


def test_file_that_disagrees_with_counts_json_is_an_error(tmp_path):
    write_jsonl(tmp_path / "simple_agrmt.jsonl", AGR)
    counts = {"total": 3, "categories": {"simple_agrmt": {"group": "simple_agrmt", "total": 3, "conditions": {"sing_MS_MV": 2, "plur_MS_MV": 1}}}}
    (tmp_path / "counts.json").write_text(json.dumps(counts))
    with pytest.raises(DataError, match=r"simple_agrmt.jsonl: 2 items .*truncated or changed"):
        load_suite(tmp_path)
    counts["categories"]["vp_coord"] = {"group": "vp_coord", "total": 1}
    counts["categories"]["simple_agrmt"] = {"total": 2, "conditions": {"sing_MS_MV": 1, "plur_MS_MV": 1}}
    (tmp_path / "counts.json").write_text(json.dumps(counts))
    with pytest.raises(DataError, match="lists \\['vp_coord'\\] but there is no such .jsonl"):
        load_suite(tmp_path)
    assert len(load_suite(tmp_path, categories=["simple_agrmt"])) == 2


def test_fields_a_line_gives_are_kept_and_blank_lines_skipped(tmp_path):
    # a line's own category, group and condition win over the defaults from the file name; a blank
    # line in the middle of a file does not end it
    path = write_jsonl(tmp_path / "simple_agrmt.jsonl", [
        {"category": "case_a", "group": "group_a", "condition": "cond_a", "good": "a b", "bad": "a c", "intrusive": "a d"},
        "",
        {"good": "e f", "bad": "e g"},
    ])  # fmt: skip
    assert read_suite_file(path) == [
        MinimalPair("case_a", "group_a", "cond_a", "a b", "a c", "a d"),
        MinimalPair("simple_agrmt", "simple_agrmt", "all", "e f", "e g", None),
    ]


def test_a_missing_suite_file_is_named_as_one(tmp_path):
    with pytest.raises(DataError, match="minimal-pair file not found: .*nothing.jsonl"):
        read_suite_file(tmp_path / "nothing.jsonl")


def test_counts_json_checks_the_total_and_the_conditions_each_alone(tmp_path):
    """A category's counts may give a total, conditions or both; each that is given must match."""
    write_jsonl(tmp_path / "simple_agrmt.jsonl", AGR)  # 2 items: sing_MS_MV 1, plur_MS_MV 1

    def counts(entry):
        (tmp_path / "counts.json").write_text(json.dumps({"categories": {"simple_agrmt": entry}}))

    found = "2 items {'sing_MS_MV': 1, 'plur_MS_MV': 1} but counts.json says"
    counts({"total": 3})
    with pytest.raises(DataError) as refused:
        load_suite(tmp_path)
    assert str(refused.value) == (f"{tmp_path / 'simple_agrmt.jsonl'}: {found} 3 None; the file is truncated "
                                  "or changed: restore it from the data source")
    counts({"total": 2, "conditions": {"sing_MS_MV": 2}})
    with pytest.raises(DataError) as refused:
        load_suite(tmp_path)
    assert f"{found} 2 {{'sing_MS_MV': 2}}; the file is truncated" in str(refused.value)
    counts({"conditions": {"sing_MS_MV": 1, "plur_MS_MV": 1}})  # no total: the conditions suffice
    assert len(load_suite(tmp_path)) == 2


def test_a_missing_or_empty_suite_folder_is_named(tmp_path):
    with pytest.raises(DataError, match=r"^syntactic-evaluation \(minimal pairs\) folder not found: .*nowhere"):
        load_suite(tmp_path / "nowhere")
    with pytest.raises(DataError) as refused:
        load_suite(tmp_path)
    assert str(refused.value) == (f"{tmp_path}: no *.jsonl files; expected the Marvin & Linzen suite "
                                  "(one JSONL file per case)")


def test_an_unreadable_counts_file_is_named(tmp_path):
    write_jsonl(tmp_path / "simple_agrmt.jsonl", AGR)
    (tmp_path / "counts.json").write_text("{not json")
    with pytest.raises(DataError, match=r"^(.*)counts.json: not a readable counts file \(.*\); restore it from the data source$") as refused:
        load_suite(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / 'counts.json'}: ")


def test_a_counts_file_without_categories_checks_nothing(tmp_path):
    write_jsonl(tmp_path / "simple_agrmt.jsonl", AGR)
    (tmp_path / "counts.json").write_text(json.dumps({"total": 5}))
    assert len(load_suite(tmp_path)) == 2


def test_a_suite_file_of_blank_lines_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "simple_agrmt.jsonl", ["", "  "])
    with pytest.raises(DataError) as refused:
        read_suite_file(path)
    assert str(refused.value) == f"{path}: no minimal pairs in the file; it needs one JSON object per line"


def test_missing_fields_default_from_the_file_name(tmp_path):
    write_jsonl(tmp_path / "prep_anim.jsonl", [{"good": "a b", "bad": "a c"}])
    assert load_suite(tmp_path) == [MinimalPair("prep_anim", "prep", "all", "a b", "a c", None)]


def test_text_style_follows_the_vocabulary():
    ptb = Vocabulary([EOS, UNK, "the", "author"])
    wiki = Vocabulary([EOS, UNK, "the", "The", "author", "."])
    assert resolve_style(ptb) == TextStyle(False, False)
    assert resolve_style(wiki) == TextStyle(True, True)
    assert resolve_style(wiki, casing="lower", final_period=False) == TextStyle(False, False)
    assert resolve_style(ptb, casing="sentence", final_period=True).words("the author laughs") == ["The", "author", "laughs", "."]
    with pytest.raises(ValueError, match="casing"):
        resolve_style(ptb, casing="upper")


VOCAB = Vocabulary([EOS, UNK, "the", "author", "authors", "laughs", "laugh", "no", "most", "have", "ever", "been"])


def test_encoding_counts_oov_per_group_and_shares_sentences():
    pairs = load_pairs(AGR + NPI)
    suite = encode_suite(pairs, VOCAB, TextStyle(False, False))
    eos = VOCAB.index[EOS]
    assert suite.sentences[0] == [eos, 2, 3, 5, eos]  # <eos> the author laughs <eos>
    # "popular" is OOV in all three NPI sentences; the agreement items have none
    npi = suite.oov["simple_npi"]
    assert (npi.items, npi.items_with_oov, npi.oov_tokens, dict(npi.words)) == (1, 1, 3, {"popular": 3})
    assert suite.oov["simple_agrmt"].items_with_oov == 0
    assert suite.oov_by_category["simple_npi_anim"].oov_tokens == 3
    unk = VOCAB.unk_id
    assert suite.sentences[int(suite.bad[2])] == [eos, 8, 4, 9, 10, 11, unk, eos]
    assert suite.intrusive.tolist() == [-1, -1, int(suite.intrusive[2])] and suite.intrusive[2] >= 0
    # the prefix trie: "<eos> the author" is one edge path shared by "... laughs" and "... laugh"
    good, bad = suite.edges[int(suite.good[0])], suite.edges[int(suite.bad[0])]
    assert good[:2] == bad[:2] and good[2] != bad[2]
    assert suite.n_edges == len({e for edges in suite.edges for e in edges})

    skipped = encode_suite(pairs, VOCAB, TextStyle(False, False), skip_oov=True)
    assert [p.group for p in skipped.pairs] == ["simple_agrmt", "simple_agrmt"]
    assert skipped.oov["simple_npi"].items_with_oov == 1  # counted even when skipped

    no_unk = Vocabulary([w for w in VOCAB.words if w != UNK])
    with pytest.raises(ValueError, match="'popular' is not in the LM's vocabulary.*skip_oov=true"):
        encode_suite(pairs, no_unk, TextStyle(False, False))


def test_a_sentences_score_sums_the_log_probabilities_of_its_own_edges():
    """"the cat sleeps" and "the cat sleep" share the edges <eos>->the (0) and the->cat (1); then
    sleeps (2), <eos> (3) and sleep (4), <eos> (5). With edge log-probabilities -1 .. -6 the
    sentences score -1-2-3-4 = -10 and -1-2-5-6 = -14, in float64."""
    vocab = Vocabulary(["<eos>", "the", "cat", "sleeps", "sleep"])
    pair = MinimalPair("simple_agrmt", "simple_agrmt", "sing", "the cat sleeps", "the cat sleep")
    suite = encode_suite([pair], vocab, TextStyle(capitalize_first=False, final_period=False))
    assert suite.edges == [[0, 1, 2, 3], [0, 1, 4, 5]]
    scores = suite.sentence_scores(torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]))
    assert scores.dtype == torch.float64
    assert scores.tolist() == [-10.0, -14.0]


def test_the_prefix_trie_keeps_a_repeated_word_on_its_own_edge():
    """"a a a" and "a a b": edges <eos>->a (0), a->a (1), a->a again (2, a new edge: its parent is
    edge 1, not the root), then <eos> (3); the second sentence leaves the shared path after edge 1:
    b (4), <eos> (5)."""
    vocab = Vocabulary(["<eos>", "a", "b"])
    pair = MinimalPair("simple_agrmt", "simple_agrmt", "sing", "a a a", "a a b")
    suite = encode_suite([pair], vocab, TextStyle(capitalize_first=False, final_period=False))
    assert suite.edges == [[0, 1, 2, 3], [0, 1, 4, 5]]
    assert suite.n_edges == 6


def test_oov_counts_add_up_over_items_and_skipping_goes_on_past_a_skipped_pair():
    """Vocabulary <eos> the cat sleeps: "the dog sleeps" (1 OOV), "the dogs barks" (2), then
    "the cat sleeps" (none) in one group: 3 items, 2 with OOV words, 3 OOV tokens; skipping keeps
    the last pair although the two before it were skipped."""
    vocab = Vocabulary(["<eos>", "the", "cat", "sleeps", "sleep"])
    style = TextStyle(capitalize_first=False, final_period=False)
    pairs = [MinimalPair("c", "g", "x", "the dog sleeps", "the cat sleep"),
             MinimalPair("c", "g", "x", "the dogs barks", "the cat sleep"),
             MinimalPair("c", "g", "x", "the cat sleeps", "the cat sleep")]
    stats = encode_suite(pairs, Vocabulary([*vocab.words, "<unk>"]), style).oov["g"]
    assert (stats.items, stats.items_with_oov, stats.oov_tokens) == (3, 2, 3)
    kept = encode_suite(pairs, vocab, style, skip_oov=True)
    assert kept.pairs == pairs[2:] and kept.style == style
    with pytest.raises(ValueError) as refused:
        encode_suite(pairs[1:], vocab, style)
    assert str(refused.value) == ("c: 'dogs' is not in the LM's vocabulary, which has no <unk>; "
                                  "set task.datamodule.skip_oov=true to skip such pairs")
    with pytest.raises(ValueError) as refused:
        encode_suite(pairs[:2], vocab, style, skip_oov=True)
    assert str(refused.value) == ("no minimal pair left to score: each has a word outside the LM's vocabulary "
                                  "(skip_oov=true)")


def test_a_vocabulary_without_eos_is_refused_as_not_an_lm_vocabulary():
    pair = MinimalPair("simple_agrmt", "simple_agrmt", "sing", "the cat sleeps", "the cat sleep")
    with pytest.raises(ValueError) as refused:
        encode_suite([pair], Vocabulary(["the", "cat"]), TextStyle(capitalize_first=False, final_period=False))
    assert str(refused.value) == "the LM's vocabulary has no <eos>: it is not a vocabulary of this project's LM task"


def test_duplicate_sentences_are_scored_once():
    pairs = load_pairs(AGR + AGR)  # the same four sentences twice
    suite = encode_suite(pairs, VOCAB, TextStyle(False, False))
    assert len(suite.sentences) == 4 and suite.good.tolist() == [0, 2, 0, 2]


@pytest.mark.parametrize("records, batch_size", [(AGR + NPI, 2), (NPI + AGR, 3)])
def test_batches_compute_every_edge_exactly_once(records, batch_size):
    """Every edge computed once; batches in order of sentence length (the least padding), padded
    with -1 edges that are never new. NPI first, three a batch: the file's order is not the length
    order and one batch mixes lengths (breaks seen failing: the length sort dropped, the padding
    edge made 1 or -2)."""
    suite = encode_suite(load_pairs(records), VOCAB, TextStyle(False, False))
    batches = SentenceBatches(suite, batch_size=batch_size)
    in_loader_order = [i for b in range(len(batches)) for i in batches[b]["sentence"].tolist()]
    assert [len(suite.sentences[i]) for i in in_loader_order] == sorted(len(s) for s in suite.sentences)
    seen = []
    covered = set()
    for b in range(len(batches)):
        batch = batches[b]
        tokens, edges, new = batch["tokens"], batch["edges"], batch["new"]
        assert tokens.shape[0] == edges.shape[0] + 1 and edges.shape == new.shape
        lengths = [len(suite.sentences[i]) for i in batch["sentence"].tolist()]
        assert lengths == sorted(lengths)
        for column, index in enumerate(batch["sentence"].tolist()):
            n = len(suite.sentences[index])
            assert tokens[:n, column].tolist() == suite.sentences[index]
            assert edges[: n - 1, column].tolist() == suite.edges[index]
            assert (edges[n - 1 :, column] == -1).all() and not new[n - 1 :, column].any()
        seen += edges[new].tolist()
        covered |= set(batch["sentence"].tolist())
    assert sorted(seen) == list(range(suite.n_edges))
    assert covered == set(range(len(suite.sentences)))


def test_datamodule_needs_the_vocabulary_first(tmp_path):
    (tmp_path / "syneval").mkdir()
    write_jsonl(tmp_path / "syneval" / "simple_agrmt.jsonl", AGR)
    datamodule = MinimalPairsDataModule(str(tmp_path), batch_size=3)
    with pytest.raises(RuntimeError, match="use_vocabulary"):
        datamodule.test_dataloader()
    for stage in ("test", None):  # Lightning's setup before testing reads the suite: the error comes before any batch
        with pytest.raises(RuntimeError, match="use_vocabulary"):
            datamodule.setup(stage)
    datamodule.use_vocabulary(VOCAB.words)
    batches = list(datamodule.test_dataloader())
    assert sum(b["tokens"].shape[1] for b in batches) == 4


def test_setup_for_testing_reads_the_suite_so_a_bad_file_stops_the_run_before_its_first_batch(tmp_path):
    """(breaks seen failing: setup's stage test inverted or misspelt, the suite not read there)"""
    (tmp_path / "syneval").mkdir()
    write_jsonl(tmp_path / "syneval" / "simple_agrmt.jsonl", AGR)
    datamodule = MinimalPairsDataModule(str(tmp_path), batch_size=3)
    datamodule.use_vocabulary(VOCAB.words)
    datamodule.setup("test")
    (tmp_path / "syneval" / "simple_agrmt.jsonl").unlink()  # read already: testing goes on without it
    assert sum(b["tokens"].shape[1] for b in datamodule.test_dataloader()) == 4


def load_pairs(records: list[dict]) -> list[MinimalPair]:
    return [
        MinimalPair(r["category"], r["group"], r["condition"], r["good"], r["bad"], r.get("intrusive")) for r in records
    ]


def test_datamodule_settings_are_checked_and_categories_pick_the_files_scored(tmp_path):
    """(breaks seen failing: the casing or batch-size message lost, a batch of one refused, the
    chosen categories ignored)"""
    with pytest.raises(ValueError) as casing:
        MinimalPairsDataModule(str(tmp_path), casing="upper")
    assert str(casing.value) == "task.datamodule.casing must be one of ('auto', 'lower', 'sentence'), got 'upper'"
    with pytest.raises(ValueError) as size:
        MinimalPairsDataModule(str(tmp_path), batch_size=0)
    assert str(size.value) == "task.datamodule.batch_size must be positive, got 0"
    (tmp_path / "syneval").mkdir()
    write_jsonl(tmp_path / "syneval" / "simple_agrmt.jsonl", AGR)
    write_jsonl(tmp_path / "syneval" / "simple_npi_anim.jsonl", NPI)
    datamodule = MinimalPairsDataModule(str(tmp_path), categories=["simple_npi_anim"], batch_size=1)
    datamodule.use_vocabulary(VOCAB.words)
    batches = list(datamodule.test_dataloader())
    assert [b["tokens"].shape[1] for b in batches] == [1, 1, 1]  # one batch per sentence of the NPI pair
    assert sorted(datamodule.suite.oov_by_category) == ["simple_npi_anim"]

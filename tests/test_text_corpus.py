"""The word-level LM corpus (datamodules/text_corpus.py) at unit size: hand-made corpora of a few
words, expected tokens, columns, segments and shards worked out by hand; no model, no training."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datamodules.files import DataError
from datamodules.text_corpus import (
    ResumableSegmentLoader,
    SegmentDataset,
    TextCorpusDataModule,
    batchify,
    build_vocabulary,
    load_corpus,
    segment_schedule,
    tokenize_file,
)

# w0 .. w22 then <eos>: the training vocabulary gives w_k the id k and <eos> the id 23, so the
# training stream is 0, 1, ..., 23 and every id says where in the stream a token came from
TRAIN_24 = " ".join(f"w{k}" for k in range(23)) + "\n"
VALID_12 = " ".join(f"w{k}" for k in range(11)) + "\n"  # ids 0..10, then <eos> (23)
TEST_6 = "w5 w4 w3 w2 w1\n"  # ids 5 4 3 2 1, then <eos> (23)


def _data_root(tmp_path: Path, train: str = TRAIN_24, valid: str = VALID_12, test: str = TEST_6) -> Path:
    folder = tmp_path / "data" / "ptb"
    folder.mkdir(parents=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{split}.txt").write_text(text)
    return tmp_path / "data"


def _trainer(rank: int = 0, world: int = 1, epoch: int = 0) -> SimpleNamespace:
    """What the datamodule reads of a Lightning trainer."""
    return SimpleNamespace(global_rank=rank, world_size=world, current_epoch=epoch)


def _items(loader) -> list[tuple[list, list, float]]:
    return [(item["input"].tolist(), item["target"].tolist(), item["lr_scale"]) for item in loader]


# ----------------------------------------------------------------------------- reading and encoding
def test_tokenize_file_splits_on_whitespace_and_ends_every_line_with_eos(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a  b\tc\n\n d \n")  # a blank line is a sentence of its own: just <eos>
    assert tokenize_file(path) == [["a", "b", "c", "<eos>"], ["<eos>"], ["d", "<eos>"]]


def test_a_single_word_is_enough_for_a_corpus_file(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n\nx\n")
    assert tokenize_file(path) == [["<eos>"], ["<eos>"], ["x", "<eos>"]]


@pytest.mark.parametrize("content", ["", "\n", " \n\t\n"], ids=["no_bytes", "one_blank_line", "whitespace_only"])
def test_a_corpus_file_without_a_word_is_refused_with_its_path(tmp_path, content):
    path = tmp_path / "c.txt"
    path.write_text(content)
    with pytest.raises(DataError) as refused:
        tokenize_file(path)
    assert str(refused.value) == f"{path}: the corpus file is empty; it needs at least one line of text"


def test_vocabulary_lists_words_in_first_seen_order_eos_included():
    vocab = build_vocabulary([["b", "a", "<eos>"], ["a", "c", "b", "<eos>"]])
    assert vocab.words == ["b", "a", "<eos>", "c"]


def test_load_corpus_encodes_every_split_with_the_training_vocabulary(tmp_path):
    # valid and test use train's ids (c is 3 because train saw it fourth), not ids of their own
    root = _data_root(tmp_path, train="b a\na c\n", valid="c b\n", test="a\n")
    splits = load_corpus(root / "ptb")
    assert splits.vocab.words == ["b", "a", "<eos>", "c"]
    assert splits.train.tolist() == [0, 1, 2, 1, 3, 2]
    assert splits.valid.tolist() == [3, 0, 2]
    assert splits.test.tolist() == [1, 2]
    assert splits.train.dtype == torch.long  # embedding indices


def test_words_only_in_valid_or_test_stay_out_of_the_vocabulary_and_read_as_unk(tmp_path):
    root = _data_root(tmp_path, train="a <unk> b\n", valid="a zebra\n", test="yak b\n")
    splits = load_corpus(root / "ptb")
    assert splits.vocab.words == ["a", "<unk>", "b", "<eos>"]
    assert splits.valid.tolist() == [0, 1, 3]
    assert splits.test.tolist() == [1, 2, 3]


def test_module_kwargs_hand_the_training_vocabulary_to_the_model(tmp_path):
    dm = TextCorpusDataModule(str(_data_root(tmp_path, train="b a\na c\n", valid="c\n", test="a\n")))
    assert dm.module_kwargs() == {"vocab": ["b", "a", "<eos>", "c"]}


# ----------------------------------------------------------------------------- batchify
def test_batchify_cuts_the_stream_into_contiguous_columns_and_drops_the_tail():
    # 11 tokens in 3 columns: 3 rows, tokens 9 and 10 dropped; column j is tokens [3j, 3j + 3)
    assert batchify(torch.arange(11), 3).tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_batchify_accepts_exactly_two_rows_and_refuses_one():
    assert batchify(torch.arange(5), 2).tolist() == [[0, 2], [1, 3]]  # 2 rows: one input, one target
    with pytest.raises(DataError) as refused:
        batchify(torch.arange(3), 2)
    # without a source or a fix: "the stream", and no dangling "; "
    assert str(refused.value) == "the stream: 3 tokens are too few for 2 batch columns of at least 2 tokens each"
    with pytest.raises(DataError) as refused:
        batchify(torch.arange(7), 4, source="x.txt", fix="do y")
    assert str(refused.value) == "x.txt: 7 tokens are too few for 4 batch columns of at least 2 tokens each; do y"


# ----------------------------------------------------------------------------- the segment schedule
class ScriptedRng:
    """Stands in for numpy's generator: ``random()`` and ``normal()`` return scripted values; the
    seed and each normal's (mean, sd) are recorded."""

    def __init__(self, uniforms, normals):
        self.uniforms, self.normals, self.seed, self.normal_args = list(uniforms), list(normals), None, []

    def __call__(self, seed):
        self.seed = seed
        return self

    def random(self):
        return self.uniforms.pop(0)

    def normal(self, mean, sd):
        self.normal_args.append((mean, sd))
        return self.normals.pop(0)


def test_variable_lengths_follow_awd_lstm_draw_by_draw(monkeypatch):
    """With the draws scripted, the schedule over 30 rows with bptt 9, by hand:
    u=0.2 < 0.95: N(9, 5) -> 12.9, int 12: (0, 12, 12);
    u=0.95, not < 0.95: N(4.5, 5) (half of 9, not 4) -> 4.7, int 4, at least 5: (12, 5, 5);
    u=0.9499: N(9, 5) -> -3.2, int -3, at least 5: (17, 5, 5);
    u=0.1: N(9, 5) -> 8.99, int 8, cut to the 29 - 22 = 7 rows left: (22, 7, 8), the nominal
    length kept. Start 29 >= 30 - 2 ends the epoch."""
    rng = ScriptedRng(uniforms=[0.2, 0.95, 0.9499, 0.1], normals=[12.9, 4.7, -3.2, 8.99])
    monkeypatch.setattr(np.random, "default_rng", rng)
    assert segment_schedule(rows=30, bptt=9, seed=7, epoch=3) == [(0, 12, 12), (12, 5, 5), (17, 5, 5), (22, 7, 8)]
    assert rng.normal_args == [(9, 5), (4.5, 5), (9, 5), (9, 5)]
    assert list(rng.seed) == [7, 3]  # the schedule is a function of (seed, epoch)


def test_training_schedule_stops_two_rows_before_the_end_and_evaluation_one(monkeypatch):
    """AWD-LSTM's loop bounds over 12 rows: training (``i < rows - 2``) stops when segments of 5
    reach row 10, so no one-row segment; evaluation (``i < rows - 1``) takes the last row pair
    as a segment of 1 (every target of the split is scored)."""
    monkeypatch.setattr(np.random, "default_rng", ScriptedRng(uniforms=[0.5] * 3, normals=[5.0] * 3))
    assert segment_schedule(rows=12, bptt=5, seed=0, epoch=0) == [(0, 5, 5), (5, 5, 5)]
    monkeypatch.undo()
    assert segment_schedule(rows=12, bptt=5, seed=0, epoch=0, variable=False) == [(0, 5, 5), (5, 5, 5), (10, 1, 5)]
    assert segment_schedule(rows=2, bptt=70, seed=0, epoch=0, variable=False) == [(0, 1, 70)]


def test_a_segment_cut_by_the_end_of_the_data_keeps_its_drawn_nominal_length():
    # 7 rows: one segment of rows 0..5 (targets 1..6); the drawn length, about 70 or 35, is far
    # over 6 and is what scales the learning rate
    [(start, length, nominal)] = segment_schedule(rows=7, bptt=70, seed=1, epoch=0)
    assert (start, length) == (0, 6) and nominal > 6


@pytest.mark.parametrize("rows", [7, 8, 9, 10, 11, 13, 17, 31, 64, 200])
def test_training_segments_tile_the_rows_without_gap_overlap_or_overrun(rows):
    """Inputs [s, s + n) follow each other from row 0; the last target row (s + n) is the last
    row or the one before it, never past the data."""
    for seed in range(5):
        schedule = segment_schedule(rows=rows, bptt=6, seed=seed, epoch=0)
        assert schedule[0][0] == 0
        assert all(s + n == s2 for (s, n, _), (s2, _, _) in zip(schedule, schedule[1:]))
        end = schedule[-1][0] + schedule[-1][1]
        assert end in (rows - 2, rows - 1), (seed, schedule)


def test_schedule_depends_on_the_seed():
    assert segment_schedule(1000, 70, seed=1, epoch=0) != segment_schedule(1000, 70, seed=2, epoch=0)


# ----------------------------------------------------------------------------- segments and the loader
def _segments() -> SegmentDataset:
    # 6 rows of 2 columns: row r holds 2r and 2r + 1
    return SegmentDataset(torch.arange(12).view(6, 2), [(0, 3, 3), (3, 2, 8)], bptt=4)


def test_a_segment_is_its_rows_and_the_target_is_the_next_row():
    segments = _segments()
    assert len(segments) == 2
    assert segments[0]["input"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert segments[0]["target"].tolist() == [[2, 3], [4, 5], [6, 7]]
    assert segments[1]["input"].tolist() == [[6, 7], [8, 9]]
    assert segments[1]["target"].tolist() == [[8, 9], [10, 11]]
    assert (segments[0]["lr_scale"], segments[1]["lr_scale"]) == (0.75, 2.0)  # nominal / bptt


def test_loader_yields_the_segments_whole_in_order():
    # batch_size=None: each item is a (time, batch) segment, not wrapped in a batch of one
    assert _items(ResumableSegmentLoader(_segments())) == [
        ([[0, 1], [2, 3], [4, 5]], [[2, 3], [4, 5], [6, 7]], 0.75),
        ([[6, 7], [8, 9]], [[8, 9], [10, 11]], 2.0),
    ]


def test_loader_state_counts_the_segments_handed_out():
    loader = ResumableSegmentLoader(_segments())
    assert loader.state_dict() == {"next_index": 0}
    batches = iter(loader)
    next(batches)
    assert loader.state_dict() == {"next_index": 1}  # saved now, a resume starts at segment 1
    next(batches)
    assert loader.state_dict() == {"next_index": 2}


def test_resumed_loader_yields_exactly_the_remaining_segments_then_whole_epochs():
    data = torch.arange(20).view(10, 2)
    schedule = [(0, 2, 2), (2, 3, 3), (5, 2, 2), (7, 2, 2)]
    first = ResumableSegmentLoader(SegmentDataset(data, schedule, bptt=2))
    batches = iter(first)
    next(batches), next(batches)
    resumed = ResumableSegmentLoader(SegmentDataset(data, schedule, bptt=2))
    resumed.load_state_dict(first.state_dict())
    assert [item["input"][0, 0].item() for item in resumed] == [10, 14]  # segments 2 and 3 (rows 5, 7)
    assert resumed.state_dict() == {"next_index": 4}
    # the resume point is used once: the next epoch starts at segment 0
    assert [item["input"][0, 0].item() for item in resumed] == [0, 4, 10, 14]


def test_iterating_the_loader_draws_nothing_from_the_global_rng():
    # a resumed run restores torch's RNG for its dropout masks; the loader must not move it
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert len(list(ResumableSegmentLoader(_segments()))) == 2
    assert torch.equal(torch.get_rng_state(), state)


def test_loader_resumed_at_the_end_of_an_epoch_yields_nothing():
    loader = ResumableSegmentLoader(_segments())
    loader.load_state_dict({"next_index": 2})
    assert list(loader) == []


# ----------------------------------------------------------------------------- the datamodule
def test_the_data_module_built_by_hand_has_the_awd_lstm_ptb_settings(tmp_path):
    """`task=lm` sets only the folder and seed, so these defaults are the run's: AWD-LSTM's PTB
    recipe (batches of 20 columns, 10 to validate, 1 to test, 70-token BPTT drawn around its
    nominal length), seed 141 (breaks seen failing: the batch sizes one more)."""
    dm = TextCorpusDataModule(str(tmp_path))
    assert dm.folder == tmp_path / "ptb"
    assert (dm.batch_size, dm.eval_batch_size, dm.test_batch_size) == (20, 10, 1)
    assert (dm.bptt, dm.variable_bptt, dm.seed, dm.train_fraction) == (70, True, 141, 1.0)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_train_fraction_outside_zero_to_one_is_refused(tmp_path, fraction):
    with pytest.raises(ValueError) as refused:
        TextCorpusDataModule(str(tmp_path), train_fraction=fraction)
    assert str(refused.value) == f"train_fraction must be in (0, 1], got {fraction}"


def test_train_fraction_keeps_a_prefix_of_the_training_stream_only(tmp_path):
    root = _data_root(tmp_path)
    half = TextCorpusDataModule(str(root), train_fraction=0.5)
    assert half.splits.train.tolist() == list(range(12))  # int(24 * 0.5) tokens from the start
    assert half.splits.valid.numel() == 12 and half.splits.test.numel() == 6  # evaluation untouched
    # int(24 * 0.01) = 0 tokens: raised to 2, the least a training step needs
    assert TextCorpusDataModule(str(root), train_fraction=0.01).splits.train.tolist() == [0, 1]
    assert TextCorpusDataModule(str(root), train_fraction=1.0).splits.train.tolist() == list(range(24))


def test_corpus_is_read_once(tmp_path):
    root = _data_root(tmp_path)
    dm = TextCorpusDataModule(str(root))
    first = dm.splits
    (root / "ptb" / "train.txt").unlink()  # a second read would fail
    assert dm.splits is first and len(dm.vocab) == 24


def test_one_process_trains_on_batch_size_columns_in_fixed_segments(tmp_path):
    # 24 tokens in 2 columns of 12 rows: column 0 is tokens 0..11, column 1 tokens 12..23;
    # bptt 5 over 12 rows without variable lengths: (0, 5), (5, 5), (10, 1)
    dm = TextCorpusDataModule(str(_data_root(tmp_path)), batch_size=2, bptt=5, variable_bptt=False)
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableSegmentLoader)
    assert loader.dataset.data.tolist() == [[r, 12 + r] for r in range(12)]
    assert loader.dataset.schedule == [(0, 5, 5), (5, 5, 5), (10, 1, 5)]
    *_, last = _items(loader)
    assert last == ([[10, 22]], [[11, 23]], 1.0)


def test_each_rank_trains_on_its_own_columns_of_the_stream(tmp_path):
    # 3 ranks of 2 columns: the stream in 6 columns of 4 rows, column j = tokens [4j, 4j + 4);
    # rank r takes columns 2r and 2r + 1, so the ranks together see every token once
    root = _data_root(tmp_path)
    shards = []
    for rank in range(3):
        dm = TextCorpusDataModule(str(root), batch_size=2, bptt=2, variable_bptt=False)
        dm.trainer = _trainer(rank=rank, world=3)
        shards.append(dm.train_dataloader().dataset.data.tolist())
    assert shards[0] == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert shards[1] == [[8, 12], [9, 13], [10, 14], [11, 15]]
    assert shards[2] == [[16, 20], [17, 21], [18, 22], [19, 23]]
    # the schedule over 4 rows with bptt 2: rows 0-1 then row 2, targets shifted by one
    assert _items(dm.train_dataloader()) == [
        ([[16, 20], [17, 21]], [[17, 21], [18, 22]], 1.0),
        ([[18, 22]], [[19, 23]], 1.0),
    ]


def test_each_rank_evaluates_its_own_columns(tmp_path):
    # valid: ids 0..10 and <eos> 23; 2 ranks of 2 columns: 4 columns of 3 rows
    root = _data_root(tmp_path)
    shards = []
    for rank in range(2):
        dm = TextCorpusDataModule(str(root), eval_batch_size=2, test_batch_size=1)
        dm.trainer = _trainer(rank=rank, world=2)
        shards.append((dm.val_dataloader().dataset.data.tolist(), dm.test_dataloader().dataset.data.tolist()))
    assert shards[0][0] == [[0, 3], [1, 4], [2, 5]]
    assert shards[1][0] == [[6, 9], [7, 10], [8, 23]]
    # test: 5 4 3 2 1 <eos> in 2 columns of 3 rows, one per rank
    assert shards[0][1] == [[5], [4], [3]]
    assert shards[1][1] == [[2], [1], [23]]


def test_evaluation_uses_its_own_batch_sizes_and_fixed_bptt_segments(tmp_path):
    """Validation: 12 tokens in eval_batch_size=3 columns of 4 rows; test: 6 tokens in
    test_batch_size=1 column of 6 rows. Segments of bptt 2 up to the last row, even though the
    training lengths are variable: valid (0, 2), (2, 1); test (0, 2), (2, 2), (4, 1)."""
    dm = TextCorpusDataModule(str(_data_root(tmp_path)), batch_size=4, eval_batch_size=3, test_batch_size=1, bptt=2)
    valid, test = dm.val_dataloader(), dm.test_dataloader()
    assert valid.dataset.data.tolist() == [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 23]]
    assert valid.dataset.schedule == [(0, 2, 2), (2, 1, 2)]
    assert test.dataset.data.tolist() == [[5], [4], [3], [2], [1], [23]]
    assert test.dataset.schedule == [(0, 2, 2), (2, 2, 2), (4, 1, 2)]
    assert _items(test)[-1] == ([[1]], [[23]], 1.0)


def _long_corpus(tmp_path: Path) -> Path:
    """A training stream of 600 tokens (60 lines of 9 words and <eos>): 600 rows in one column."""
    line = " ".join(f"w{k}" for k in range(9)) + "\n"
    return _data_root(tmp_path, train=line * 60, valid=line, test=line)


def test_training_segments_are_drawn_anew_each_epoch_from_seed_and_epoch(tmp_path):
    """The epoch comes from the trainer (0 without one), so a resumed run redraws the schedule
    it was in, and the next epoch does not repeat this one."""
    root = _long_corpus(tmp_path)

    def schedule(seed=141, trainer=None, variable=True):
        dm = TextCorpusDataModule(str(root), batch_size=1, bptt=10, seed=seed, variable_bptt=variable)
        dm.trainer = trainer
        return dm.train_dataloader().dataset.schedule

    epoch0 = schedule()
    assert len({nominal for _, _, nominal in epoch0}) > 3  # variable lengths
    assert schedule(trainer=_trainer(epoch=0)) == epoch0
    assert schedule(trainer=_trainer(epoch=1)) != epoch0
    assert schedule(trainer=_trainer(epoch=1)) == schedule(trainer=_trainer(epoch=1))
    assert schedule(seed=142) != epoch0
    # fixed lengths when variable_bptt is off: 600 rows, last start below 599
    assert schedule(variable=False) == [(s, 10, 10) for s in range(0, 590, 10)] + [(590, 9, 10)]


def test_a_split_too_short_for_one_process_names_only_the_batch_setting(tmp_path):
    # no devices to lower with one process, no train_fraction to raise when it is 1
    root = _data_root(tmp_path)
    folder = root / "ptb"
    dm = TextCorpusDataModule(str(root), batch_size=13, test_batch_size=4)
    with pytest.raises(DataError) as refused:  # 24 tokens in 13 columns: 1 row
        dm.train_dataloader()
    assert str(refused.value) == (
        f"{folder / 'train.txt'}: 24 tokens are too few for 13 batch columns of at least 3 "
        "tokens each; lower task.datamodule.batch_size"
    )
    with pytest.raises(DataError) as refused:  # 6 tokens in 4 columns: 1 row
        dm.test_dataloader()
    assert str(refused.value) == (
        f"{folder / 'test.txt'}: 6 tokens are too few for 4 batch columns of at least 2 "
        "tokens each; lower task.datamodule.test_batch_size"
    )


def test_variable_length_training_needs_three_rows_per_column(tmp_path):
    """Over two rows AWD-LSTM's training loop (``i < rows - 2``) makes no segment: an epoch would
    train on nothing, silently. Two rows are refused for variable-length training only."""
    root = _data_root(tmp_path)
    folder = root / "ptb"
    with pytest.raises(DataError) as refused:  # 24 tokens in 12 columns: 2 rows
        TextCorpusDataModule(str(root), batch_size=12).train_dataloader()
    assert str(refused.value) == (
        f"{folder / 'train.txt'}: 24 tokens are too few for 12 batch columns of at least 3 "
        "tokens each; lower task.datamodule.batch_size"
    )
    assert len(_items(TextCorpusDataModule(str(root), batch_size=8).train_dataloader())) == 1  # 3 rows
    fixed = TextCorpusDataModule(str(root), batch_size=12, variable_bptt=False).train_dataloader()
    assert len(_items(fixed)) == 1  # fixed lengths: one segment of one row, as in evaluation
    dm = TextCorpusDataModule(str(root), eval_batch_size=6)  # 12 valid tokens in 6 columns: 2 rows
    assert len(_items(dm.val_dataloader())) == 1


def test_a_split_too_short_for_all_ranks_names_the_file_the_setting_and_the_devices(tmp_path):
    root = _data_root(tmp_path)
    folder = root / "ptb"
    dm = TextCorpusDataModule(str(root), eval_batch_size=2, test_batch_size=2, train_fraction=0.5)
    dm.trainer = _trainer(rank=0, world=2)
    with pytest.raises(DataError) as refused:  # 6 tokens in 2 x 2 columns: 1 row each
        dm.test_dataloader()
    assert str(refused.value) == (
        f"{folder / 'test.txt'}: 6 tokens are too few for 4 batch columns of at least 2 "
        "tokens each; lower task.datamodule.test_batch_size or the number of devices (2)"
    )
    dm.batch_size = 4  # 12 tokens (half of 24) in 4 x 2 columns
    with pytest.raises(DataError) as refused:
        dm.train_dataloader()
    assert str(refused.value) == (
        f"{folder / 'train.txt'}: 12 tokens are too few for 8 batch columns of at least 3 "
        "tokens each; lower task.datamodule.batch_size or the number of devices (2) "
        "or raise task.datamodule.train_fraction (0.5)"
    )


# ----------------------------------------------------------------------------- unigram baseline
def test_unigram_perplexity_is_add_one_smoothed_training_counts_scored_on_valid(tmp_path):
    """train "a a b", valid "b a": counts a 2, b 1, <eos> 1, plus one each: 3, 2, 2 of 7.
    Valid b a <eos> scores 2/7, 3/7, 2/7: perplexity (7^3 / 12)^(1/3)."""
    dm = TextCorpusDataModule(str(_data_root(tmp_path, train="a a b\n", valid="b a\n", test="a\n")))
    assert dm.unigram_perplexity() == pytest.approx((343 / 12) ** (1 / 3), rel=1e-12)


def test_unigram_perplexity_counts_the_training_prefix_and_smooths_unseen_words(tmp_path):
    """train "a a b c d" (6 tokens with <eos>), half of it: a a b. Counts over the whole
    vocabulary a b c d <eos> plus one: 3, 2, 1, 1, 1 of 8; valid d a <eos>: 1/8, 3/8, 1/8."""
    root = _data_root(tmp_path, train="a a b c d\n", valid="d a\n", test="a\n")
    dm = TextCorpusDataModule(str(root), train_fraction=0.5)
    assert dm.unigram_perplexity() == pytest.approx((512 / 3) ** (1 / 3), rel=1e-12)

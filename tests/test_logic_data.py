"""datamodules.logic_formulas (formulas, truth tables, relations, generator) and the logic datamodule."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from datamodules.files import DataError
from datamodules.propositional_logic import (
    TOKEN_IDS,
    PropositionalLogicDataModule,
    collate,
    read_pairs,
    split_holdout,
)
from datamodules.logic_formulas import (
    ALL_TRUE,
    RELATIONS,
    SYMBOLS,
    FormulaError,
    count_operators,
    evaluate,
    parse,
    random_example,
    random_formula,
    relation,
    to_string,
    truth_table,
)
from tests.helpers import DATA_DIR, requires_data, write_lines

LOGIC = "logic"


# ----------------------------------------------------------------------------- parsing
def test_parse_variables_and_operators():
    assert parse("a") == "a"
    assert parse("( not d )") == ("not", "d")
    assert parse("( a ( and b ) )") == ("and", "a", "b")
    text = "( ( not f ) ( or ( c ( and ( not e ) ) ) ) )"
    assert parse(text) == ("or", ("not", "f"), ("and", "c", ("not", "e")))
    assert to_string(parse(text)) == text
    assert count_operators(parse(text)) == 4  # two not, one or, one and


@pytest.mark.parametrize(
    "bad, where",
    [
        ("", "empty"),
        ("( a and b )", "expected '('"),
        ("( a ( xor b ) )", "'xor'"),
        ("( not a", "expected ')'"),
        ("a b", "after a complete formula"),
        ("g", "'g'"),
    ],
)
def test_parse_rejects_malformed(bad, where):
    with pytest.raises(FormulaError, match=re.escape(where)):
        parse(bad)


# ----------------------------------------------------------------------------- semantics
def test_truth_tables_by_hand():
    assert bin(truth_table("a")).count("1") == 32
    assert bin(truth_table(parse("( a ( and b ) )"))).count("1") == 16
    assert bin(truth_table(parse("( a ( or b ) )"))).count("1") == 48
    assert truth_table(parse("( a ( and ( not a ) ) )")) == 0
    assert truth_table(parse("( a ( or ( not a ) ) )")) == ALL_TRUE
    assert evaluate(parse("( a ( and ( not b ) ) )"), {"a": True, "b": False})
    assert not evaluate(parse("( a ( and ( not b ) ) )"), {"a": True, "b": True})


@pytest.mark.parametrize(
    "premise, hypothesis, expected",
    [
        ("a", "a", "="),
        ("( not ( not a ) )", "a", "="),
        ("( not ( a ( and b ) ) )", "( ( not a ) ( or ( not b ) ) )", "="),  # De Morgan
        ("( a ( and b ) )", "a", "<"),
        ("a", "( a ( or b ) )", "<"),
        ("a", "( a ( and b ) )", ">"),
        ("a", "( not a )", "^"),
        ("( a ( and b ) )", "( not a )", "|"),
        ("( a ( or b ) )", "( not a )", "v"),
        ("a", "b", "#"),
        ("( a ( and b ) )", "( c ( or d ) )", "#"),
    ],
)
def test_relation_hand_cases(premise, hypothesis, expected):
    assert relation(premise, hypothesis) == expected


def test_relation_is_converse_when_swapped():
    converse = {"=": "=", "<": ">", ">": "<", "^": "^", "|": "|", "v": "v", "#": "#"}
    rng = random.Random(3)
    for _ in range(200):
        p, h = random_formula(rng, rng.randint(0, 5)), random_formula(rng, rng.randint(0, 5))
        assert relation(h, p) == converse[relation(p, h)]


def test_generator_operator_count_and_labels():
    rng = random.Random(0)
    for n in (0, 1, 7, 13, 20):
        formula = random_formula(rng, n)
        assert count_operators(formula) == n
        assert parse(to_string(formula)) == formula
    labels = set()
    for _ in range(300):
        label, premise, hypothesis = random_example(rng, 4)
        assert max(count_operators(parse(premise)), count_operators(parse(hypothesis))) == 4
        assert truth_table(parse(premise)) not in (0, ALL_TRUE)
        assert label == relation(premise, hypothesis)
        labels.add(label)
    assert labels >= {"<", ">", "|", "v", "#"}
    assert random_example(random.Random(5), 9) == random_example(random.Random(5), 9)  # seeded


def _check_file(path: Path, limit: int | None = None) -> int:
    checked = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        label, premise, hypothesis = line.split("\t")
        assert relation(premise, hypothesis) == label, f"{path}:{number}"
        checked += 1
        if limit and checked >= limit:
            break
    return checked


@requires_data(*(f"{LOGIC}/test{n}" for n in range(13)))
def test_relation_agrees_with_every_original_test_label():
    """All 37,367 test pairs (about 1-2 s): the generator's labels are right by construction."""
    total = sum(_check_file(DATA_DIR / LOGIC / f"test{n}") for n in range(13))
    assert total == 37_367


@requires_data(*(f"{LOGIC}/train{n}" for n in range(13)))
def test_relation_agrees_with_train_labels_sample():
    assert sum(_check_file(DATA_DIR / LOGIC / f"train{n}", limit=300) for n in range(13)) == 30 + 12 * 300


# ----------------------------------------------------------------------------- data files
def test_read_pairs_encodes_lines(tmp_path):
    path = write_lines(tmp_path / "train2", ["<\t( a ( and b ) )\ta", "#\ta\t( not b )"])
    first, second = read_pairs(path, 2)
    assert first.label == RELATIONS.index("<") and first.ops == 2
    assert first.premise == tuple(TOKEN_IDS[t] for t in ["(", "a", "(", "and", "b", ")", ")"])
    assert second.hypothesis == (TOKEN_IDS["("], TOKEN_IDS["not"], TOKEN_IDS["b"], TOKEN_IDS[")"])


@pytest.mark.parametrize(
    "line, message",
    [
        ("<\ta", "expected 3 tab-separated fields"),
        ("<\ta\tb\tc", "found 4"),
        ("?\ta\tb", "unknown relation '\\?'"),
        ("<\ta\t( a ( xor b ) )", "unknown token 'xor' in the hypothesis"),
        ("<\t\tb", "the premise is empty"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "test3", ["=\ta\ta", line])
    with pytest.raises(DataError, match=message) as err:
        read_pairs(path, 3)
    assert f"{path}:2" in str(err.value)


def test_missing_file_is_a_data_error(tmp_path):
    dm = PropositionalLogicDataModule(str(tmp_path), train_ops=[0])
    with pytest.raises(DataError, match="train0"):
        dm.setup("fit")


def test_holdout_every_tenth():
    kept, held = split_holdout(list(range(1, 26)), 10)
    assert held == [10, 20] and len(kept) == 23


def test_datamodule_splits_and_batches(tmp_path):
    write_lines(tmp_path / "train0", [f"#\t{v}\tb" for v in "acdefacdefacdef"] + ["=\ta\ta"] * 5)  # 20 lines
    write_lines(tmp_path / "train1", ["<\t( a ( and b ) )\ta"] * 10)
    write_lines(tmp_path / "test0", ["=\tb\tb"])
    write_lines(tmp_path / "test1", ["^\ta\t( not a )", ">\ta\t( a ( and c ) )"])
    dm = PropositionalLogicDataModule(str(tmp_path), train_ops=[0, 1], test_ops=[0, 1], batch_size=4)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) == 18 + 9 and len(dm.val_set) == 2 + 1
    assert dm.module_kwargs()["test_ops"] == [0, 1]
    batch = next(iter(dm.test_dataloader()))
    assert batch["premise"].shape == (1, 3)  # time-major, sorted by length: "b", "a", "a"
    assert batch["hypothesis"].shape == (7, 3)
    assert batch["hypothesis_len"].tolist() == [1, 4, 7]
    assert batch["hypothesis"][4:, 1].tolist() == [0, 0, 0]  # right padding
    assert batch["ops"].tolist() == [0, 1, 1]
    assert [RELATIONS[i] for i in batch["label"]] == ["=", "^", ">"]
    seen = sorted(int(i) for b in dm.train_dataloader() for i in b["label"])
    assert len(seen) == 27


def test_collate_pads_with_zero():
    from datamodules.propositional_logic import LogicExample

    batch = collate([LogicExample((1, 2, 3), (4,), 0, 1), LogicExample((5,), (6, 7), 6, 2)])
    assert batch["premise"].tolist() == [[1, 5], [2, 0], [3, 0]]
    assert torch.equal(batch["premise_len"], torch.tensor([3, 1]))


@requires_data(*(f"{LOGIC}/train{n}" for n in range(13)))
def test_relation_agrees_with_every_original_train_label():
    """All 211,702 training pairs too (several seconds on a busy 2-core machine)."""
    assert sum(_check_file(DATA_DIR / LOGIC / f"train{n}") for n in range(13)) == 211_702


def test_generated_files_feed_the_test_split(tmp_path):
    """`python -m datamodules.logic_formulas --ops 13 16 --out DIR` then task.datamodule.test_dir=DIR test_ops=[13,16]."""
    from datamodules.logic_formulas import main as generate

    generate(["--ops", "13", "16", "--count", "40", "--seed", "1", "--out", str(tmp_path / "gen")])
    dm = PropositionalLogicDataModule(str(tmp_path / "missing"), test_dir=str(tmp_path / "gen"), test_ops=[13, 16])
    dm.setup("test")
    assert len(dm.test_set) == 80 and {e.ops for e in dm.test_set.examples} == {13, 16}
    for line in (tmp_path / "gen" / "test16").read_text().splitlines():
        label, premise, hypothesis = line.split("\t")
        assert label == relation(premise, hypothesis)
        assert max(count_operators(parse(premise)), count_operators(parse(hypothesis))) == 16


def test_generated_test_pairs_sit_beside_the_test_files(tmp_path):
    """task.datamodule.generated_test_ops: longer formulas than Bowman's files, generated in memory
    with exact labels, the same pairs for every training seed, tested and reported per operator count."""
    write_lines(tmp_path / "test1", ["^\ta\t( not a )"])
    kwargs = dict(test_ops=[1], generated_test_ops=[13, 15], generated_test_count=25, generated_test_seed=3)
    dm = PropositionalLogicDataModule(str(tmp_path), seed=1, **kwargs)
    dm.setup("test")
    assert dm.module_kwargs()["test_ops"] == [1, 13, 15]
    examples = dm.test_set.examples
    assert sorted(Counter(e.ops for e in examples).items()) == [(1, 1), (13, 25), (15, 25)]
    symbols = ("<pad>",) + SYMBOLS
    for e in examples:
        if e.ops == 1:
            continue
        premise, hypothesis = (" ".join(symbols[i] for i in side) for side in (e.premise, e.hypothesis))
        assert RELATIONS[e.label] == relation(premise, hypothesis)
        assert max(count_operators(parse(premise)), count_operators(parse(hypothesis))) == e.ops
    other_seed = PropositionalLogicDataModule(str(tmp_path), seed=2, **kwargs)
    other_seed.setup("test")
    assert other_seed.test_set.examples == examples  # generated_test_seed, not the training seed, draws them
    other_draw = PropositionalLogicDataModule(str(tmp_path), seed=1, **{**kwargs, "generated_test_seed": 4})
    other_draw.setup("test")
    assert other_draw.test_set.examples != examples  # (break seen failing: the seed not handed to the generator)
    with pytest.raises(ValueError, match=r"operators \[1\] are in both"):
        PropositionalLogicDataModule(str(tmp_path), test_ops=[1], generated_test_ops=[1, 13])


# ----------------------------------------------------------------------------- vocabulary and labels
def test_token_ids_are_fixed_by_the_grammar():
    """Trained checkpoints depend on these ids: padding 0, brackets, operators, then a..f."""
    assert TOKEN_IDS == {"<pad>": 0, "(": 1, ")": 2, "not": 3, "and": 4, "or": 5,
                         "a": 6, "b": 7, "c": 8, "d": 9, "e": 10, "f": 11}


def test_each_relation_reads_as_its_fixed_id(tmp_path):
    path = write_lines(tmp_path / "test0", [f"{symbol}\ta\tb" for symbol in "=<>^|v#"])
    assert [e.label for e in read_pairs(path, 0)] == [0, 1, 2, 3, 4, 5, 6]


def test_default_split_trains_on_up_to_six_operators_and_tests_on_zero_to_twelve(tmp_path):
    """Bowman's split: train0..train6 (every 10th line held out for validation), test0..test12;
    train7..train12 exist in the data folder but are not read."""
    for n in range(13):
        write_lines(tmp_path / f"train{n}", ["=\ta\ta"] * 10)
        write_lines(tmp_path / f"test{n}", ["#\ta\tb"])
    dm = PropositionalLogicDataModule(str(tmp_path))
    assert dm.module_kwargs() == {
        "vocab_size": 12,
        "pad_id": 0,
        "relations": ["=", "<", ">", "^", "|", "v", "#"],
        "train_ops": [0, 1, 2, 3, 4, 5, 6],
        "test_ops": list(range(13)),
    }
    dm.setup()
    assert sorted(Counter(e.ops for e in dm.train_set.examples).items()) == [(n, 9) for n in range(7)]
    assert sorted(e.ops for e in dm.val_set.examples) == list(range(7))
    assert sorted(e.ops for e in dm.test_set.examples) == list(range(13))


# ----------------------------------------------------------------------------- error messages
@pytest.mark.parametrize(
    "line, message",
    [
        ("<\ta", "expected 3 tab-separated fields (LABEL, PREMISE, HYPOTHESIS), found 2"),
        ("?\ta\tb", "unknown relation '?'; labels are = < > ^ | v #"),
        ("<\ta\t( a ( xor b ) )",
         "unknown token 'xor' in the hypothesis; formulas use only ( ) not and or a b c d e f separated by spaces"),
        ("<\t(a ( and b ) )\tb",
         "unknown token '(a' in the premise; formulas use only ( ) not and or a b c d e f separated by spaces"),
        ("<\ta\t ", "the hypothesis is empty; each line is LABEL<TAB>PREMISE<TAB>HYPOTHESIS"),
    ],
)
def test_bad_line_messages_say_what_to_write(tmp_path, line, message):
    path = write_lines(tmp_path / "train4", ["=\ta\ta", "=\tb\tb", line])
    with pytest.raises(DataError) as err:
        read_pairs(path, 4)
    assert str(err.value) == f"{path}:3: {message}"


def test_empty_file_is_a_data_error(tmp_path):
    path = write_lines(tmp_path / "test5", [])
    with pytest.raises(DataError) as err:
        read_pairs(path, 5)
    assert str(err.value) == f"{path}: the file is empty; it needs LABEL<TAB>PREMISE<TAB>HYPOTHESIS lines"


def test_missing_folder_and_file_name_the_logic_data(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"^logic data folder not found: .*nowhere .*ONLSTM_DATA_DIR"):
        PropositionalLogicDataModule(str(missing), test_ops=[0]).setup("test")
    with pytest.raises(DataError) as err:
        PropositionalLogicDataModule(str(tmp_path), train_ops=[3]).setup("fit")
    assert str(err.value) == (
        f"logic data file not found: {tmp_path / 'train3'} (the folder {tmp_path} exists but has no train3)"
    )


def test_constructor_checks(tmp_path):
    with pytest.raises(ValueError) as err:
        PropositionalLogicDataModule(str(tmp_path), val_every=1)
    assert str(err.value) == "val_every must be >= 2 (every val_every-th example is held out), got 1"
    PropositionalLogicDataModule(str(tmp_path), val_every=2)  # the smallest accepted
    with pytest.raises(ValueError) as err:
        PropositionalLogicDataModule(str(tmp_path), generated_test_ops=[13], generated_test_count=0)
    assert str(err.value) == "task.datamodule.generated_test_count must be positive, got 0"
    PropositionalLogicDataModule(str(tmp_path), generated_test_ops=[13], generated_test_count=1)
    PropositionalLogicDataModule(str(tmp_path), generated_test_count=0)  # unused without generated_test_ops
    with pytest.raises(ValueError) as err:
        PropositionalLogicDataModule(str(tmp_path), test_ops=[13, 1, 2], generated_test_ops=[14, 13, 1])
    assert str(err.value) == (
        "operators [1, 13] are in both task.datamodule.test_ops (files) and task.datamodule.generated_test_ops "
        "(generated): give each number of operators one source"
    )


# ----------------------------------------------------------------------------- splits and order
def test_holdout_every_second_and_none_when_every_is_zero():
    assert split_holdout(list("abcde"), 2) == (["a", "c", "e"], ["b", "d"])
    assert split_holdout(list("abc"), 0) == (["a", "b", "c"], [])  # 0: nothing held out


def test_example_length_is_the_longer_side():
    from datamodules.propositional_logic import LogicExample

    assert LogicExample((1, 6, 2), (7,), 0, 1).length == 3
    assert LogicExample((7,), (1, 3, 7, 2), 0, 1).length == 4


def test_evaluation_sets_are_sorted_by_the_longer_side(tmp_path):
    """Validation and test examples come shortest first (less padding), by the longer of the two
    formulas, ties in file order; the files list them in another order."""
    write_lines(tmp_path / "test1", [
        "^\ta\t( not a )",  # length 4 (the hypothesis)
        "=\tb\tb",  # 1
        ">\t( a ( and c ) )\ta",  # 7 (the premise)
        "<\tc\t( c ( or d ) )",  # 7 (the hypothesis), after the one above
    ])
    write_lines(tmp_path / "train0", [
        "#\ta\tb", "<\t( a ( and b ) )\ta",  # line 2 held out: length 7
        "#\tc\td", "^\tb\t( not b )",  # line 4 held out: length 4
        "#\te\tf", "=\tf\tf",  # line 6 held out: length 1
    ])
    dm = PropositionalLogicDataModule(str(tmp_path), train_ops=[0], test_ops=[1], val_every=2)
    dm.setup()
    assert [RELATIONS[e.label] for e in dm.test_set.examples] == ["=", "^", ">", "<"]
    assert [RELATIONS[e.label] for e in dm.val_set.examples] == ["=", "^", "<"]
    assert [RELATIONS[e.label] for e in dm.train_set.examples] == ["#", "#", "#"]


def test_fractions_subsample_each_split_and_each_test_file(tmp_path):
    """20 training lines: 18 kept, 2 held out. train_fraction 0.5 keeps 9, val_fraction 1.0 both,
    test_fraction 0.5 keeps round(1.5) = 2 of each 3-line test file (4, not round(0.5 * 6) = 3)."""
    write_lines(tmp_path / "train0", ["=\ta\ta"] * 20)
    write_lines(tmp_path / "test0", ["#\ta\tb"] * 3)
    write_lines(tmp_path / "test1", ["^\ta\t( not a )"] * 3)
    dm = PropositionalLogicDataModule(str(tmp_path), train_ops=[0], test_ops=[0, 1], train_fraction=0.5,
                                      test_fraction=0.5)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (9, 2)
    assert sorted(e.ops for e in dm.test_set.examples) == [0, 0, 1, 1]


def test_setup_stages_read_only_what_they_need_and_only_once(tmp_path):
    write_lines(tmp_path / "train0", ["=\ta\ta"] * 4)
    dm = PropositionalLogicDataModule(str(tmp_path), train_ops=[0], test_ops=[0], val_every=2)
    dm.setup("validate")  # no test0 yet: validation needs only the training files
    assert (len(dm.train_set), len(dm.val_set), dm.test_set) == (2, 2, None)
    dm.setup("fit")
    write_lines(tmp_path / "test0", ["#\ta\tb"])
    dm.setup("test")
    (tmp_path / "train0").unlink()
    (tmp_path / "test0").unlink()
    dm.setup("fit")  # Lightning calls setup again (fit then test): the sets are kept, not re-read
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (2, 2, 1)


# ----------------------------------------------------------------------------- subsampling and batches
def test_subsample_bounds_and_sizes():
    from datamodules.propositional_logic import subsample

    for bad in (0.0, -0.5, 1.01):
        with pytest.raises(ValueError) as err:
            subsample(list(range(10)), bad, 0)
        assert str(err.value) == f"fraction must be in (0, 1], got {bad}"
    assert subsample(list(range(10)), 1.0, 0) == list(range(10))
    assert len(subsample(list(range(10)), 0.36, 0)) == 4  # round(3.6)
    assert len(subsample(list(range(10)), 0.01, 0)) == 1  # never empty
    half = subsample(list(range(100)), 0.5, 7)
    assert len(half) == 50 and half == sorted(half) and len(set(half)) == 50  # in the original order
    assert subsample(list(range(100)), 0.5, 7) == half  # seeded
    assert subsample(list(range(100)), 0.5, 8) != half


def test_collate_gives_every_field_time_major():
    from datamodules.propositional_logic import LogicExample

    batch = collate([LogicExample((1, 6, 2), (9,), 3, 2), LogicExample((7,), (1, 3, 8, 2), 5, 4)])
    assert set(batch) == {"premise", "premise_len", "hypothesis", "hypothesis_len", "label", "ops"}
    assert batch["premise"].tolist() == [[1, 7], [6, 0], [2, 0]]
    assert batch["premise_len"].tolist() == [3, 1]
    assert batch["hypothesis"].tolist() == [[9, 1], [0, 3], [0, 8], [0, 2]]
    assert batch["hypothesis_len"].tolist() == [1, 4]
    assert batch["label"].tolist() == [3, 5] and batch["ops"].tolist() == [2, 4]
    assert all(t.dtype == torch.long for t in batch.values())


def test_generated_pairs_are_pinned_by_seed_and_operator_count():
    """The generated test set must not move between versions (results stay comparable). Labels
    checked by hand: (not b and d) implies d (<); a or b vs c, b or e vs a, not (c and d) vs
    f or not c, b and not f vs b and c all overlap, neither inside the other, and all-false
    variables make both sides false (#); (e and a) and c implies (b or a) or f (<)."""
    from datamodules.propositional_logic import generated_pairs

    symbols = ("<pad>",) + SYMBOLS

    def shown(examples):
        return [(RELATIONS[e.label], " ".join(symbols[i] for i in e.premise),
                 " ".join(symbols[i] for i in e.hypothesis), e.ops) for e in examples]

    assert shown(generated_pairs(2, 3, seed=0)) == [
        ("<", "( ( not b ) ( and d ) )", "d", 2),
        ("#", "( ( a ( or b ) ) ( or a ) )", "( c ( and c ) )", 2),
        ("#", "( b ( or e ) )", "( not ( not a ) )", 2),
    ]
    assert shown(generated_pairs(2, 3, seed=1)) == [
        ("#", "( not ( c ( and d ) ) )", "( f ( or ( not c ) ) )", 2),
        ("#", "( b ( and ( not f ) ) )", "( ( b ( and c ) ) ( and b ) )", 2),
        ("<", "( ( e ( and a ) ) ( and c ) )", "( ( b ( or a ) ) ( or f ) )", 2),
    ]


@pytest.mark.parametrize("bad_pair, message", [
    (("#", "a", " "), "<generated, 3 operators, seed 5>:2: the hypothesis is empty; "
                      "each line is LABEL<TAB>PREMISE<TAB>HYPOTHESIS"),
    (("#", "( a ( xor b ) )", "b"), "<generated, 3 operators, seed 5>:2: unknown token 'xor' in the premise; "
                                    "formulas use only " + " ".join(SYMBOLS) + " separated by spaces"),
])
def test_a_generated_formula_outside_the_grammar_is_an_error_naming_the_set_and_pair(monkeypatch, bad_pair, message):
    """The generated test sets are encoded like the files: a generator bug that wrote a formula
    outside the grammar would stop the run with the set (operators, seed), the pair's number and
    the side, not go on with a wrong id (breaks seen failing: the set's name None, the pair's
    number or the side None in the call that encodes them)."""
    import datamodules.propositional_logic as logic_data

    draws = iter([("=", "a", "a"), bad_pair])
    monkeypatch.setattr(logic_data, "random_example", lambda rng, n_operators: next(draws))
    with pytest.raises(DataError) as info:
        logic_data.generated_pairs(3, 2, seed=5)
    assert str(info.value) == message


def test_the_data_module_built_by_hand_has_the_defaults_of_the_config(tmp_path):
    """Built in a notebook without Hydra, the data module reads the same data in the same batches
    as `task=logic` (tests/fixtures/composed_configs.yaml, "config: task=logic"): the paper's batch
    of 128, length-bucketed, seed 141, no loader workers, 300 generated pairs per length from seed 0
    (breaks seen failing: each of those defaults one more, bucket False, the bucket flag not handed
    to the loaders' base class)."""
    dm = PropositionalLogicDataModule(str(tmp_path))
    assert (dm.batch_size, dm.eval_batch_size, dm.bucket, dm.seed, dm.num_workers) == (128, 256, True, 141, 0)
    assert (dm.generated_test_ops, dm.generated_test_count, dm.generated_test_seed) == ([], 300, 0)


def nested_not(depth: int) -> str:
    """``a`` under ``depth`` negations: 3 * depth + 1 tokens, one formula per depth."""
    formula = "a"
    for _ in range(depth):
        formula = f"( not {formula} )"
    return formula


def test_the_subsamples_of_a_cpu_sized_run_are_fixed_by_the_seed(tmp_path):
    """train/val/test_fraction pick the same examples every time a run with that seed is built (a
    resumed or repeated run validates on the same pairs, and results stay comparable between
    versions: the pre-registered logic runs validate on a fifth of the held-out pairs). Lines are
    told apart by their depth of negation. Pinned for seed 141: the held-out lines are every 10th,
    and half of them are kept (breaks seen failing: each split's seed None (drawn afresh), the
    validation's seed + 1 -> - 1 or + 2)."""
    write_lines(tmp_path / "train0", [f"=\t{nested_not(i)}\t{nested_not(i)}" for i in range(200)])
    write_lines(tmp_path / "test0", [f"=\t{nested_not(i)}\t{nested_not(i)}" for i in range(20)])

    def chosen(seed: int) -> tuple[list[int], ...]:
        dm = PropositionalLogicDataModule(str(tmp_path), train_ops=[0], test_ops=[0], seed=seed, train_fraction=0.1,
                                          val_fraction=0.5, test_fraction=0.25)
        dm.setup()
        return tuple(sorted((len(e.premise) - 1) // 3 + 1 for e in split.examples)  # the line number
                     for split in (dm.train_set, dm.val_set, dm.test_set))

    train, val, test = chosen(141)
    assert chosen(141) == (train, val, test)
    assert val == [10, 50, 60, 100, 130, 150, 160, 180, 190, 200]
    assert test == [1, 2, 5, 6, 8]
    assert len(train) == 18 and not set(train) & set(range(10, 201, 10))
    assert chosen(7) != (train, val, test)

"""ListOps: expressions, values, gold spans, the file reader, tree scoring, the generator and the datamodule."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from omegaconf import OmegaConf

from datamodules.files import DataError
from datamodules.listops import TOKENS, ListOpsDataModule, bucket_low, bucket_names, overlaps
from datamodules.listops_expressions import (
    OPERATORS,
    ExpressionError,
    apply_operator,
    depth,
    evaluate,
    format_line,
    gold_spans,
    gold_tree,
    make_item,
    parse,
    read_listops,
    score_trees,
    strip_round_brackets,
    to_released,
    to_tokens,
    tree_f1,
)
from datamodules import listops_generator
from datamodules.listops_generator import (
    ARG_COUNTS,
    GenerationError,
    LengthTables,
    draw,
    generate,
    length_weights,
    main,
    published_draw,
)
from onlstm.parsing.trees import right_branching
from tests.helpers import DATA_DIR, command_line_messages, requires_data, write_lines

RELEASED = "listops/test_d20s.tsv"

# the issue's example and a deeper one, with everything about them worked out by hand
ISSUE = "[MAX 2 9 [MIN 4 7 ] 0 ]"
ISSUE_RELEASED = "( ( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )"
DEEP = "[SM [MED 1 2 ] [MAX [MIN 3 4 ] 5 ] ]"


def expr(text: str):
    return parse(text.split())


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    "text, value",
    [
        ("7", 7),
        (ISSUE, 9),
        ("[MIN 4 7 ]", 4),
        ("[SM 6 5 9 0 ]", 0),  # 20 mod 10
        ("[SM 9 9 9 ]", 7),
        ("[MED 9 0 5 ]", 5),
        ("[MED 1 2 ]", 1),  # int(np.median([1, 2])) = int(1.5): rounded down
        ("[MED 3 8 1 6 ]", 4),  # middle 3 and 6: 4.5 -> 4
        (DEEP, 6),  # MED(1,2) = 1, MIN(3,4) = 3, MAX(3,5) = 5, SM(1,5) = 6
    ],
)
def test_values_by_hand(text, value):
    assert evaluate(expr(text)) == value


@requires_data(RELEASED)
def test_evaluator_and_binarisation_agree_with_every_released_line():
    """All 10,000 labels of the released test file are our evaluator's values, and writing each
    expression back with the generator's round brackets gives the released line exactly."""
    checked = 0
    for line in (DATA_DIR / RELEASED).read_text().splitlines():
        label, text = line.split("\t")
        expression = parse(strip_round_brackets(text.split()))
        assert evaluate(expression) == int(label), line
        assert to_released(expression) == text, line
        checked += 1
    assert checked == 10_000


# ----------------------------------------------------------------------------- tokens, spans, depth
def test_round_brackets_stripped_and_written_back():
    tokens = strip_round_brackets(ISSUE_RELEASED.split())
    assert " ".join(tokens) == ISSUE
    assert to_released(expr(ISSUE)) == ISSUE_RELEASED
    assert to_released(expr("[SM 6 5 9 0 ]")) == "( ( ( ( ( [SM 6 ) 5 ) 9 ) 0 ) ] )"  # line 1 of the released file
    assert to_released(7) == "7"


@pytest.mark.parametrize(
    "text, spans, expected_depth, length",
    [
        ("7", [], 0, 1),
        ("[MAX 2 9 ]", [(0, 4)], 1, 4),
        # [MAX 2 9 [MIN 4 7 ] 0 ]: tokens 0..8, [MIN at 3, its ] at 6
        (ISSUE, [(0, 9), (3, 7)], 2, 9),
        # [SM [MED 1 2 ] [MAX [MIN 3 4 ] 5 ] ]: [MED 1-4, [MAX 5-11, [MIN 6-9, outer ] at 12
        (DEEP, [(0, 13), (1, 5), (5, 12), (6, 10)], 3, 13),
    ],
)
def test_gold_spans_depth_and_length_by_hand(text, spans, expected_depth, length):
    expression = expr(text)
    assert gold_spans(expression) == spans
    assert depth(expression) == expected_depth
    assert len(to_tokens(expression)) == length
    assert " ".join(to_tokens(expression)) == text


# ----------------------------------------------------------------------------- the reader
@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("3\t[MAX 3 x ]", "unknown token 'x'"),
        ("3\t[FIRST 3 4 ]", "unknown token '[FIRST'"),
        ("3\t( ( [MAX 3 ) 4 ) ] ) )", "')' closes no '('"),
        ("3\t( ( ( [MAX 3 ) 4 ) ]", "never closed"),
        ("3\t[MAX 3 4", "never closed with ']'"),
        ("3\t[MAX 3 4 ] ]", "']' closes no operator"),
        ("3\t[MAX ]", "has no argument"),
        ("3\t3 4", "2 expressions side by side"),
        ("3\t", "empty expression"),
        ("10\t[MAX 3 4 ]", "label '10' is not a digit"),
        ("x\t3", "label 'x' is not a digit"),
        ("[MAX 3 4 ]", "expected 2 tab-separated fields"),
        ("4\t[MAX 3 4 ]\t4", "found 3"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "bad.tsv", ["9\t( ( ( [MAX 2 ) 9 ) ] )", bad_line])
    with pytest.raises(DataError, match=r"bad\.tsv:2: .*" + message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        read_listops(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty expression"),
        ("[MAX 3 x ]", "token 3: unknown token 'x'; expressions use 0 1 2 3 4 5 6 7 8 9 [MIN [MAX [MED [SM ] "
                       "and the round brackets ( ), separated by spaces"),
        ("[MAX 3 ] ]", "token 4: ']' closes no operator"),
        ("[MAX 3 [MIN ] ]", "token 4: [MIN has no argument"),
        ("[MAX [MIN 3", "2 operator(s) never closed with ']' (innermost [MIN)"),
    ],
)
def test_parse_messages_say_which_token_counting_from_one(text, message):
    with pytest.raises(ExpressionError) as refused:
        parse(text.split())
    assert str(refused.value) == message


def test_round_bracket_messages_say_which_token_counting_from_one():
    with pytest.raises(ExpressionError) as refused:
        strip_round_brackets("( 3 ) )".split())
    assert str(refused.value) == "token 4: ')' closes no '('"
    with pytest.raises(ExpressionError) as refused:
        strip_round_brackets("( ( 3 )".split())
    assert str(refused.value) == "1 round bracket(s) '(' never closed"


def test_an_unknown_operator_is_named_with_the_four_known_ones():
    with pytest.raises(ValueError) as refused:
        apply_operator("[FIRST", [1, 2])
    assert str(refused.value) == "unknown operator '[FIRST'; one of ('[MIN', '[MAX', '[MED', '[SM')"


def test_an_items_label_is_the_one_given_or_else_the_expressions_value():
    """A released file's label is kept as read (a wrong one shows up in accuracy, not hidden)."""
    expression = parse("[MAX 3 4 ]".split())
    assert make_item(expression).label == 4
    assert make_item(expression, label=7).label == 7


def test_reader_reads_released_format(tmp_path):
    path = write_lines(tmp_path / "ok.tsv", ["9\t" + ISSUE_RELEASED, "7\t7"])
    first, second = read_listops(path)
    assert first.tokens == tuple(ISSUE.split()) and first.label == 9 and first.depth == 2
    assert first.spans == ((0, 9), (3, 7)) and first.length == 9
    assert second.tokens == ("7",) and second.spans == () and second.depth == 0
    with pytest.raises(DataError, match="empty"):
        read_listops(write_lines(tmp_path / "empty.tsv", []))
    with pytest.raises(DataError, match=r"^ListOps data file not found: .*missing\.tsv \("):
        read_listops(tmp_path / "missing.tsv")
    # the file's label is what the model learns, even where it is not the expression's value
    (kept,) = read_listops(write_lines(tmp_path / "label.tsv", ["3\t( ( ( [MAX 2 ) 9 ) ] )"]))
    assert kept.label == 3


# ----------------------------------------------------------------------------- scoring induced trees
def test_tree_f1_by_hand():
    """The parsing task's sentence F1 on ListOps gold spans. [MAX 2 9 [MIN 4 7 ] 0 ] has gold
    (0,9) (whole, left out) and (3,7). The binary tree below has 7 spans besides the whole:
    (0,2) (2,9) (3,9) (3,7) (4,7) (5,7) (7,9); one is gold: P = 1/7, R = 1, F1 = 2/7 / 8/7 = 1/4.
    Right-branching has (1,9) .. (7,9): none gold, F1 = 0."""
    tokens = ISSUE.split()
    spans = [(0, 9), (3, 7)]
    pred = [["[MAX", "2"], ["9", [["[MIN", ["4", ["7", "]"]]], ["0", "]"]]]]
    assert tree_f1(pred, spans, 9) == pytest.approx(0.25)
    assert tree_f1(right_branching(tokens), spans, 9) == 0.0
    assert tree_f1(gold_tree(spans, 9), spans, 9) == 1.0  # the gold tree itself
    # [MAX 2 9 ]: no gold span besides the whole; a binary tree has (1,4) (2,4): precision 0
    assert tree_f1(right_branching("[MAX 2 9 ]".split()), [(0, 4)], 4) == 0.0
    assert tree_f1(gold_tree([(0, 4)], 4), [(0, 4)], 4) == 1.0
    with pytest.raises(ValueError, match="9 leaves, the expression 8 tokens"):
        tree_f1(pred, spans, 8)


def test_score_trees_is_the_parsing_metric_bundle():
    """Two expressions: the tree above (sentence F1 1/4) and right-branching on [MAX 2 9 ] (0):
    f1_sentence = 1/8. Corpus counts with the whole span: matched 2 + 1, predicted 8 + 3, gold
    2 + 1: P = 3/11, R = 1, F1 = 6/11 / 14/11 = 3/7."""
    pred = [["[MAX", "2"], ["9", [["[MIN", ["4", ["7", "]"]]], ["0", "]"]]]]
    scores = score_trees([pred, right_branching("[MAX 2 9 ]".split())], [[(0, 9), (3, 7)], [(0, 4)]], [9, 4])
    assert scores["f1_sentence"] == pytest.approx(1 / 8)
    assert scores["f1_corpus"] == pytest.approx(3 / 7)
    assert scores["sentences"] == 2
    with pytest.raises(ValueError, match="tree 1 has 4 leaves"):
        score_trees([pred, right_branching("[MAX 2 9 ]".split())], [[(0, 9)], [(0, 4)]], [9, 5])
    with pytest.raises(ValueError, match=r"^got 2 trees, 1 span lists and 2 lengths$"):
        score_trees([pred, right_branching("[MAX 2 9 ]".split())], [[(0, 9)]], [9, 4])


def test_length_buckets_and_their_shortest_lengths():
    """The buckets of the accuracy tables; the shortest length of each decides which are shaded as
    longer than training (the last bucket, open above, included)."""
    names = bucket_names([10, 20, 1000])
    assert names == ["1-10", "11-20", "21-1000", ">1000"]
    assert [bucket_low(name) for name in names] == [1, 11, 21, 1001]


def test_the_gold_tree_has_a_constituent_per_operator_over_numbered_leaves():
    """[MAX 2 [MIN 4 7 ] ] (6 tokens): spans (0, 6) and (2, 5); leaf k is the string of position k."""
    assert gold_tree([(0, 6), (2, 5)], 6) == ["0", "1", ["2", "3", "4"], "5"]


# ----------------------------------------------------------------------------- the generator
def _nodes(expression, out):
    out.append(expression)
    if not isinstance(expression, int):
        for argument in expression[1]:
            _nodes(argument, out)
    return out


def test_length_tables_by_hand():
    """P_d(l): a subtree at depth d has l tokens. At depth 19 an operator's arguments are values:
    P_19(4) = P(op) P(k=2) = 1/4 * 1/4. At depth 1: P_1(1) = 3/4, P_1(4) = 1/4 * 1/4 * (3/4)^2,
    P_1(5) = 1/4 * 1/4 * (3/4)^3; lengths 2 and 3 are impossible."""
    tables = LengthTables(10)
    assert tables.sums[19][1][4] == pytest.approx(1 / 16)
    assert tables.sums[20][1].tolist() == [0, 1] + [0] * 9
    assert tables.sums[1][1][1] == 0.75
    assert tables.sums[1][1][4] == pytest.approx(1 / 16 * 0.75**2)
    assert tables.sums[1][1][5] == pytest.approx(1 / 16 * 0.75**3)
    assert tables.sums[1][1][2] == tables.sums[1][1][3] == 0


class ScriptedRng:
    """A random.Random stand-in: random() returns the scripted values in turn, randint the fewest
    arguments (checking make_data.py's bounds), choice the last option."""

    def __init__(self, values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)

    def randint(self, low, high):
        assert (low, high) == (2, 5)
        return low

    def choice(self, options):
        return options[-1]


def test_the_published_generator_draws_a_value_above_value_p_and_always_at_depth_20():
    """make_data.py's generate_tree, call by call: a node at depth < 20 is an operator unless
    random() > 0.25 (0.25 itself gives an operator), at depth 20 a value without a draw, and a
    value is choice(range(10)). Scripted: 19 operators down the first arguments (depths 1-19),
    whose depth-20 arguments are values; then the second argument of the depth-18 node draws 0.25:
    an operator over two values; every later draw (0.9) is a value."""
    tree = published_draw(ScriptedRng([0.0] * 19 + [0.25] + [0.9] * 100))
    pair = ("[SM", (9, 9))
    expected = ("[SM", (pair, pair))  # the depth-18 node
    for _ in range(17):  # depths 17 .. 1
        expected = ("[SM", (expected, 9))
    assert tree == expected
    assert depth(tree) == 19


def test_length_conditioned_draw_matches_rejection_from_the_published_generator():
    """Our draw given a length in 4-40 against make_data.py's generator with rejection: the
    length distribution, the root's argument count and depth agree within sampling error."""
    rng = random.Random(11)
    reference = []
    while len(reference) < 3000:
        tree = published_draw(rng)
        if 4 <= len(to_tokens(tree)) <= 40:
            reference.append(tree)
    tables = LengthTables(40)
    weights = length_weights(tables, 4, 40)
    ours = [draw(rng, tables, 4, weights) for _ in range(3000)]

    def summary(trees):
        lengths = [len(to_tokens(t)) for t in trees]
        arity = Counter(len(t[1]) for t in trees)
        return (
            sum(lengths) / len(lengths),
            sum(n <= 8 for n in lengths) / len(lengths),
            [arity[k] / len(trees) for k in ARG_COUNTS],
            sum(depth(t) for t in trees) / len(trees),
        )

    (ref_mean, ref_short, ref_arity, ref_depth), (mean, short, arity, mean_depth) = summary(reference), summary(ours)
    assert mean == pytest.approx(ref_mean, abs=1.0)  # sd of a length ~9: standard error of the difference ~0.25
    assert short == pytest.approx(ref_short, abs=0.04)
    assert arity == pytest.approx(ref_arity, abs=0.04)  # the root's arity is not uniform given the length
    assert mean_depth == pytest.approx(ref_depth, abs=0.15)


def test_generated_sample_keeps_the_published_node_distribution():
    """Long expressions (200-300 tokens): operators uniform over the four, 2-5 arguments, digits
    uniform over 0-9, operators nested at most 19 deep."""
    expressions = generate(40, 200, 300, seed=5)
    nodes = [n for e in expressions for n in _nodes(e, [])]
    operators = Counter(n[0] for n in nodes if not isinstance(n, int))
    digits = Counter(n for n in nodes if isinstance(n, int))
    n_ops, n_digits = sum(operators.values()), sum(digits.values())
    assert n_ops > 2000 and n_digits > 5000
    assert all(abs(operators[op] / n_ops - 0.25) < 0.04 for op in OPERATORS), operators
    assert all(abs(digits[d] / n_digits - 0.1) < 0.02 for d in range(10)), digits
    assert {len(n[1]) for n in nodes if not isinstance(n, int)} == set(ARG_COUNTS)
    assert all(200 <= len(to_tokens(e)) <= 300 and depth(e) <= 19 for e in expressions)


def test_generator_distinct_exclusion_and_reachable_counts():
    """Four operators and 10 x 10 digit pairs: exactly 400 expressions have 4 tokens."""
    every = generate(400, 4, 4, seed=1)
    tokens = [tuple(to_tokens(e)) for e in every]
    assert len(set(tokens)) == 400
    with pytest.raises(GenerationError, match="only 400 of 401 distinct expressions"):
        generate(401, 4, 4, seed=1)
    excluded = set(tokens[:10])
    rest = generate(390, 4, 4, seed=2, exclude=excluded)
    assert not excluded & {tuple(to_tokens(e)) for e in rest}
    with pytest.raises(GenerationError, match="not among the 10 excluded"):
        generate(391, 4, 4, seed=2, exclude=excluded)


def test_generator_is_seeded():
    assert generate(30, 4, 60, seed=3) == generate(30, 4, 60, seed=3)
    assert generate(30, 4, 60, seed=3) != generate(30, 4, 60, seed=4)


@pytest.mark.parametrize(
    "args, message",
    [((5, 10, 9), "above max_length"), ((5, 2, 3), "no expression has 2-3 tokens"), ((0, 4, 9), "count must be"),
     ((5, 0, 9), "min_length must be"), ((5, 4, 30_000), "above the 20000 tokens")],
)
def test_generator_refuses_impossible_requests(args, message):
    with pytest.raises(GenerationError, match=message):
        generate(*args, seed=0)


def test_the_probability_of_a_length_range_by_hand_and_against_published_draws():
    """LengthTables.mass, what the command line prints: a lone digit 3/4; 4 or 5 tokens
    1/16 (3/4)^2 + 1/16 (3/4)^3 = 63/1024; 500-600 tokens within three standard errors of the share
    of 2,000,000 draws of make_data.py's generator that fell there (804, counted by
    benchmarks/listops_generation.py: benchmarks/results/listops_generation_cpu.md)."""
    tables = LengthTables(600)
    assert tables.mass(1, 1) == 0.75
    assert tables.mass(4, 5) == pytest.approx(63 / 1024)
    hits, draws = 804, 2_000_000
    assert abs(tables.mass(500, 600) - hits / draws) < 3 * hits**0.5 / draws


def test_length_weights_are_the_roots_length_distribution_over_the_range():
    """P_1(l) for l = 1..5 by hand: a lone digit 3/4, no expression of 2 or 3 tokens, then
    1/16 (3/4)^2 and 1/16 (3/4)^3 (as in the test above); over 500-600 tokens, where the root's
    depth limit matters, the weights hold the mass the command line prints."""
    assert length_weights(LengthTables(5), 1, 5).tolist() == pytest.approx([0.75, 0, 0, 9 / 256, 27 / 1024])
    tables = LengthTables(600)
    assert length_weights(tables, 500, 600).sum() == pytest.approx(tables.mass(500, 600), rel=1e-12)


@pytest.mark.parametrize(
    "low, high, message",
    [
        (0, 5, "min_length must be at least 1, got 0"),
        (2, 3, "no expression has 2-3 tokens (lengths are 1 or at least 4; operators nest at most 19 deep): widen the range"),
    ],
)
def test_length_weights_refuse_a_range_without_expressions(low, high, message):
    with pytest.raises(GenerationError) as refused:
        length_weights(LengthTables(5), low, high)
    assert str(refused.value) == message


def test_length_weights_need_tables_as_long_as_the_range():
    with pytest.raises(ValueError) as refused:
        length_weights(LengthTables(10), 4, 11)
    assert str(refused.value) == "the tables reach 10 tokens, not 11"


def test_length_tables_go_up_to_the_longest_supported_length(monkeypatch):
    monkeypatch.setattr(listops_generator, "LONGEST", 30)  # the real bound takes seconds to tabulate
    assert LengthTables(30).max_length == 30
    with pytest.raises(GenerationError) as refused:
        LengthTables(31)
    assert str(refused.value) == "max_length 31 is above the 30 tokens the generator supports"


def test_a_range_with_too_few_expressions_gives_up_after_fifty_draws_per_expression(monkeypatch):
    """One token: the ten digits only. Eleven distinct ones cannot come; with the floor of draws
    lowered, the request gives up after 50 x 11 draws, having found all ten."""
    monkeypatch.setattr(listops_generator, "MIN_ATTEMPTS", 1)
    with pytest.raises(GenerationError) as refused:
        generate(11, 1, 1, seed=0)
    assert str(refused.value) == (
        "only 10 of 11 distinct expressions of 1-1 tokens (not among the 0 excluded) came in 550 draws: "
        "the range holds too few distinct expressions; ask for fewer or widen the length range")


class FixedDraw:
    """Stands in for random.Random: random() returns one chosen number."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


def test_a_weighted_choice_never_takes_an_option_of_weight_zero():
    # a draw of exactly 0 lands on the boundary of the zero-weight first option: not that one
    assert listops_generator._choose(FixedDraw(0.0), np.array([0.0, 1.0, 1.0])) == 1
    # a draw that rounding puts on the total: the last option with weight, not one past the end
    assert listops_generator._choose(FixedDraw(1.0), np.array([1.0, 1.0, 1.0, 0.0])) == 2


def test_a_tree_drawn_one_level_above_the_deepest_holds_values_only():
    """A node at depth 20 is always a value: a 7-token tree at depth 19 is one operator over five
    digits, every time; at depth 18 its arguments may still be an operator over two digits
    (7 = 2 + one digit + a 4-token operator)."""
    tables = LengthTables(7)
    at_19 = [listops_generator.draw_tree(random.Random(seed), tables, 7, depth=19) for seed in range(100)]
    assert all(len(tree[1]) == 5 and all(isinstance(a, int) for a in tree[1]) for tree in at_19)
    at_18 = [listops_generator.draw_tree(random.Random(seed), tables, 7, depth=18) for seed in range(100)]
    assert any(len(tree[1]) == 2 for tree in at_18)


def test_a_tree_is_drawn_from_the_root_unless_told_its_depth():
    """Over a thousand tokens the root's length distribution differs from one a level down (the
    depth limit bites), so the default depth shows in the draws."""
    tables = LengthTables(1000)
    for seed in range(3):
        default = listops_generator.draw_tree(random.Random(seed), tables, 1000)
        assert default == listops_generator.draw_tree(random.Random(seed), tables, 1000, depth=1)


def test_command_line_help_and_its_required_arguments(capsys):
    shown, error = command_line_messages(main, capsys)
    assert shown.startswith("usage: python -m datamodules.listops_generator [-h] --count COUNT --min-length MIN_LENGTH "
                            "--max-length MAX_LENGTH [--seed SEED] [--exclude [EXCLUDE ...]] --out OUT [--force] ")
    assert ("Write distinct ListOps expressions of a chosen length range, drawn from the published generator's "
            "distribution (nyu-mll/spinn make_data.py), as label<TAB>expression lines with the binarising round "
            "brackets of the released test file.") in shown
    for option in ("--count COUNT number of expressions", "--min-length MIN_LENGTH fewest tokens (round brackets not "
                   "counted)", "--max-length MAX_LENGTH most tokens (round brackets not counted)",
                   "--exclude [EXCLUDE ...] released-format files none of whose expressions may be drawn",
                   "--out OUT output file (refused if it exists, unless --force)", "--force overwrite --out if it exists"):
        assert option in shown
    assert "the following arguments are required: --count, --min-length, --max-length, --out" in error


def test_command_line_seed_folders_exclusions_and_report(tmp_path, capsys):
    """The file is generate()'s expressions for the seed given (0 when none is); a new folder for
    --out is made; a missing --exclude file is named as such; the report gives the time taken and the
    probability of the length range (4-5 tokens: 63/1024)."""
    args = ["--count", "20", "--min-length", "4", "--max-length", "5"]
    assert main([*args, "--seed", "7", "--out", str(tmp_path / "new" / "folder" / "seven.tsv")]) == 0
    assert (tmp_path / "new" / "folder" / "seven.tsv").read_text() == "".join(
        format_line(e) + "\n" for e in generate(20, 4, 5, seed=7))
    report = capsys.readouterr().err
    assert "a published draw has such a length with probability 0.0615" in report
    seconds = float(report.split(" in ")[1].split(" s;")[0])
    assert 0 <= seconds < 600
    main([*args, "--out", str(tmp_path / "default.tsv")])
    main([*args, "--seed", "0", "--out", str(tmp_path / "zero.tsv")])
    assert (tmp_path / "default.tsv").read_text() == (tmp_path / "zero.tsv").read_text()
    with pytest.raises(SystemExit):
        main([*args, "--exclude", str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "x.tsv")])
    assert "--exclude file not found" in capsys.readouterr().err


def test_command_line_writes_the_released_format(tmp_path, capsys):
    out = tmp_path / "gen.tsv"
    assert main(["--count", "50", "--min-length", "10", "--max-length", "30", "--seed", "7", "--out", str(out)]) == 0
    items = read_listops(out)  # the same reader as the released file
    assert len(items) == 50 and len({i.tokens for i in items}) == 50
    assert all(10 <= i.length <= 30 for i in items)
    for line in out.read_text().splitlines():
        label, text = line.split("\t")
        assert text.startswith("( ") and evaluate(parse(strip_round_brackets(text.split()))) == int(label)
    assert "wrote 50 expressions of 10-30 tokens" in capsys.readouterr().err

    before = out.read_text()
    with pytest.raises(SystemExit) as refused:
        main(["--count", "5", "--min-length", "10", "--max-length", "30", "--out", str(out)])
    assert refused.value.code == 2 and "exists" in capsys.readouterr().err and out.read_text() == before

    # --exclude FILE: the 400 four-token expressions less the 50 in FILE leave 350
    main(["--count", "50", "--min-length", "4", "--max-length", "4", "--out", str(tmp_path / "a.tsv")])
    main(["--count", "350", "--min-length", "4", "--max-length", "4", "--exclude", str(tmp_path / "a.tsv"),
          "--out", str(out), "--force"])
    assert not {i.tokens for i in read_listops(tmp_path / "a.tsv")} & {i.tokens for i in read_listops(out)}
    with pytest.raises(SystemExit):
        main(["--count", "1", "--min-length", "9", "--max-length", "4", "--out", str(tmp_path / "b.tsv")])
    assert "above max_length" in capsys.readouterr().err and not (tmp_path / "b.tsv").exists()


# ----------------------------------------------------------------------------- the datamodule
SMALL = dict(train_count=150, val_count=40, train_min_length=4, train_max_length=12,
             generated_test_lengths=["10-16", "30-40"], generated_test_count=30, batch_size=16)


def test_batches_from_files_are_padded_and_carry_spans(tmp_path):
    write_lines(tmp_path / "released.tsv", ["7\t7", "9\t" + ISSUE_RELEASED])
    write_lines(tmp_path / "train.tsv", ["6\t" + to_released(expr(DEEP)), "5\t( ( ( [MIN 5 ) 8 ) ] )"])
    write_lines(tmp_path / "valid.tsv", ["4\t( ( ( [MIN 4 ) 7 ) ] )"])
    dm = ListOpsDataModule(str(tmp_path), released_test_file="released.tsv", train_file="train.tsv",
                           val_file="valid.tsv", generated_test_lengths=[], bucket=False, batch_size=2,
                           length_buckets=[4, 10], valid_in_test=False)
    dm.setup()
    kwargs = dm.module_kwargs()
    assert kwargs["sources"] == ["train", "valid", "released"] and kwargs["test_sources"] == ["released"]
    assert kwargs["length_buckets"] == ["1-4", "5-10", ">10"] and kwargs["num_classes"] == 10
    assert kwargs["vocab_size"] == 16 and kwargs["tokens"][0] == "<pad>" and kwargs["pad_id"] == 0
    assert kwargs["train_max_length"] == 13  # the longest expression of train.tsv: DEEP
    assert kwargs["max_depth"] == 19  # make_data.py's depth 20 is always a value: operators nest 19 deep

    batch = next(iter(dm.test_dataloader()))  # sorted by length: 7, then the issue's example
    assert batch["tokens"].shape == (9, 2)  # time-major
    assert [kwargs["tokens"][i] for i in batch["tokens"][:, 1].tolist()] == ISSUE.split()
    assert batch["tokens"][:, 0].tolist() == [TOKENS.index("7")] + [0] * 8  # right-padded with 0
    assert batch["length"].tolist() == [1, 9] and batch["label"].tolist() == [7, 9]
    assert batch["depth"].tolist() == [0, 2]
    assert batch["gold_spans"] == [[], [(0, 9), (3, 7)]]
    assert [kwargs["length_buckets"][i] for i in batch["length_bucket"].tolist()] == ["1-4", "5-10"]
    assert [kwargs["sources"][i] for i in batch["source"].tolist()] == ["released", "released"]

    train = next(iter(dm.train_dataloader()))
    assert sorted(train["length"].tolist()) == [4, 13] and set(train["source"].tolist()) == {0}
    by_length = dict(zip(train["length"].tolist(), train["gold_spans"]))
    assert by_length[13] == [(0, 13), (1, 5), (5, 12), (6, 10)]
    assert [kwargs["length_buckets"][i] for i in sorted(train["length_bucket"].tolist())] == ["1-4", ">10"]


def test_a_given_training_file_must_not_share_expressions_with_the_released_file(tmp_path):
    write_lines(tmp_path / "released.tsv", ["9\t" + ISSUE_RELEASED])
    write_lines(tmp_path / "train.tsv", ["4\t( ( ( [MIN 4 ) 7 ) ] )", "9\t" + ISSUE_RELEASED])
    dm = ListOpsDataModule(str(tmp_path), released_test_file="released.tsv", train_file="train.tsv", **SMALL)
    with pytest.raises(DataError, match=r"train\.tsv: 1 expression\(s\) \(first at line 2\) also occur in the released"):
        dm.setup("fit")


@requires_data(RELEASED)
def test_generated_splits_are_disjoint_and_fixed_by_the_data_seed():
    """4-12 tokens overlaps many released expressions (2,093 of them are one operator over
    digits) and the 10-16 test range overlaps training: nothing is shared anyway."""
    dm = ListOpsDataModule(str(DATA_DIR / "listops"), seed=1, **SMALL)
    dm.setup()
    sources = dm.module_kwargs()["sources"]
    assert sources == ["train", "valid", "released", "len10-16", "len30-40"]
    assert dm.module_kwargs()["train_max_length"] == 12  # the top of the generated range
    by_source = {name: [i.tokens for i in dm.items(name)] for name in sources}
    assert [len(by_source[s]) for s in sources] == [150, 40, 10_000, 30, 30]
    released = set(by_source["released"])
    assert sum(1 for t in released if len(t) <= 12) > 2000  # so exclusion had work to do
    seen: set = set()
    for name in sources:
        tokens = set(by_source[name])
        assert len(tokens) == len(by_source[name]) and not tokens & seen, name
        seen |= tokens
    lows = {"train": 4, "valid": 4, "len10-16": 10, "len30-40": 30}
    highs = {"train": 12, "valid": 12, "len10-16": 16, "len30-40": 40}
    for name in lows:
        assert all(lows[name] <= len(t) <= highs[name] for t in by_source[name]), name
    # the validation split rides along in the test loader (valid_in_test): the same 40 examples
    assert Counter(e.source for e in dm.test_set.examples) == {1: 40, 2: 10_000, 3: 30, 4: 30}
    assert sorted(e.ids for e in dm.test_set.examples if e.source == 1) == sorted(e.ids for e in dm.val_set.examples)
    for example in dm.train_set.examples + dm.val_set.examples:
        tokens = [TOKENS[i] for i in example.ids]
        assert example.label == evaluate(parse(tokens))

    other_run = ListOpsDataModule(str(DATA_DIR / "listops"), seed=2, **SMALL)  # another run's seed
    other_run.setup("fit")
    assert [e.ids for e in other_run.train_set.examples] == [e.ids for e in dm.train_set.examples]
    other_data = ListOpsDataModule(str(DATA_DIR / "listops"), data_seed=1, **SMALL)
    other_data.setup("fit")
    assert [e.ids for e in other_data.train_set.examples] != [e.ids for e in dm.train_set.examples]


def test_generated_splits_exclude_each_other(tmp_path):
    """All 400 four-token expressions: training takes 300, validation the other 60 of the same
    range, a test range 4-6 none of those 360."""
    dm = ListOpsDataModule(str(tmp_path), released_test_file=None, train_count=300, val_count=60,
                           train_min_length=4, train_max_length=4, generated_test_lengths=["4-6"],
                           generated_test_count=40)
    dm.setup()
    train, valid, test = ({i.tokens for i in dm.items(s)} for s in ("train", "valid", "len4-6"))
    assert (len(train), len(valid), len(test)) == (300, 60, 40)
    assert not train & valid and not (train | valid) & test


def test_training_batches_are_length_bucketed(tmp_path):
    def padding(bucket: bool) -> int:
        dm = ListOpsDataModule(str(tmp_path), released_test_file=None, bucket=bucket, **{**SMALL, "train_max_length": 60})
        dm.setup("fit")
        batches = list(dm.train_dataloader())
        assert sorted(i for b in batches for i in b["label"].tolist()) == sorted(e.label for e in dm.train_set.examples)
        return sum(int(b["length"].max()) * len(b["length"]) - int(b["length"].sum()) for b in batches)

    assert padding(bucket=True) < padding(bucket=False) / 3


@pytest.mark.parametrize(
    "changes, message",
    [({"generated_test_lengths": ["300"]}, "generated_test_lengths: '300' is not a length range"),
     ({"generated_test_lengths": ["20-10"]}, "generated_test_lengths"),
     ({"generated_test_lengths": ["20-30", "20-30"]}, "a range twice"),
     ({"train_min_length": 50, "train_max_length": 10}, "train_min_length/train_max_length"),
     ({"length_buckets": [20, 10]}, "length_buckets must be increasing"),
     ({"val_count": 0}, "val_count must be positive"),
     ({"train_count": 0}, "^task.datamodule.train_count must be positive, got 0$"),
     ({"generated_test_count": -1}, "^task.datamodule.generated_test_count must be positive, got -1$"),
     ({"train_min_length": 0}, "^task.datamodule.train_min_length/train_max_length: '0-12' is not a length range"),
     ({"generated_test_lengths": ["-5"]}, "'-5' is not a length range MIN-MAX with 1 <= MIN <= MAX"),
     ({"generated_test_lengths": ["a-5"]}, "'a-5' is not a length range"),
     ({"generated_test_lengths": ["5-a"]}, "'5-a' is not a length range"),
     ({"length_buckets": [0, 10]}, r"^task.datamodule.length_buckets must be increasing positive bounds, got \[0, 10\]$")],
)
def test_bad_settings_name_the_config_key(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        ListOpsDataModule(str(tmp_path), **{**SMALL, **changes})


def test_the_smallest_settings_are_accepted(tmp_path):
    """One expression per split, a range of one length starting at 1, a first bucket of 1."""
    dm = ListOpsDataModule(str(tmp_path), **{**SMALL, "train_count": 1, "val_count": 1, "generated_test_count": 1,
                                             "train_min_length": 1, "train_max_length": 1,
                                             "generated_test_lengths": ["1-1"], "length_buckets": [1, 10]})
    assert (dm.train_range, dm.test_ranges, dm.bounds) == ((1, 1), [(1, 1)], [1, 10])


def test_the_data_module_built_by_hand_has_the_defaults_of_the_config(tmp_path):
    """Built in a notebook without Hydra, the data module draws the same data, in the same
    batches, as `task=listops` (tests/fixtures/composed_configs.yaml)."""
    dm = ListOpsDataModule(str(tmp_path))
    assert (dm.train_count, dm.val_count, dm.train_range, dm.generated_test_count) == (40_000, 2_000, (3, 100), 300)
    assert (dm.batch_size, dm.eval_batch_size, dm.bucket, dm.seed, dm.num_workers) == (128, 256, True, 141, 0)


def test_length_ranges_overlap_when_they_share_a_length():
    assert overlaps((4, 100), (100, 200)) and overlaps((4, 100), (50, 60)) and overlaps((50, 60), (4, 100))
    assert not overlaps((4, 100), (200, 300)) and not overlaps((200, 300), (4, 100))


def test_a_generated_split_excludes_every_given_files_expressions_and_overlapping_generated_ones(tmp_path):
    """A given training file's expressions may have any length, so a generated test split excludes
    them whatever its range; a generated split of lengths it cannot share (validation, 5 tokens,
    against a test split of 4) is not among its exclusions. Seen in the error of a request for more
    4-token expressions than exist (4 operators x 10^2 digit pairs = 400, less the file's 3)."""
    write_lines(tmp_path / "train.tsv", ["9\t( ( ( [MAX 2 ) 9 ) ] )", "2\t( ( ( [MIN 2 ) 9 ) ] )",
                                         "1\t( ( ( [SM 2 ) 9 ) ] )"])
    dm = ListOpsDataModule(str(tmp_path), train_file="train.tsv", released_test_file=None, val_count=5,
                           train_min_length=5, train_max_length=5, generated_test_lengths=["4-4"],
                           generated_test_count=401, batch_size=16)
    with pytest.raises(GenerationError, match=r"only 397 of 401 distinct expressions of 4-4 tokens \(not among the 3 "
                                              r"excluded\)"):
        dm.setup("test")


def test_setup_for_validation_builds_the_validation_split(tmp_path):
    dm = ListOpsDataModule(str(tmp_path), released_test_file=None, **SMALL)
    dm.setup("validate")
    assert sum(len(batch["label"]) for batch in dm.val_dataloader()) == SMALL["val_count"]


def test_missing_released_file_names_the_path(tmp_path):
    dm = ListOpsDataModule(str(tmp_path), **SMALL)
    with pytest.raises(DataError, match=r"test_d20s\.tsv"):
        dm.setup("test")


def test_signature_makes_a_typed_config(tmp_path):
    """The task's schema is made from this signature (tasks/jobs/schemas/base.py): every argument must
    have a type a structured config can hold, and the config must instantiate the datamodule."""
    from hydra.utils import instantiate

    from tasks.jobs.schemas.base import signature_schema

    cfg = OmegaConf.structured(signature_schema("ListOpsDataSchema", ListOpsDataModule))
    assert cfg.generated_test_lengths == ["200-300", "500-600", "900-1000"]
    assert cfg.train_count == 40_000 and cfg.train_max_length == 100 and cfg.length_buckets[-1] == 1000
    cfg.data_dir = str(tmp_path)
    cfg.released_test_file = None
    cfg.generated_test_lengths = ["20-30"]
    dm = instantiate(cfg, train_count=20, val_count=5, generated_test_count=5)
    dm.setup()
    assert dm.module_kwargs()["sources"] == ["train", "valid", "len20-30"]
    assert len(dm.test_set) == 5 + 5  # the generated test set and the validation split (valid_in_test)

"""datamodules.logic_formulas, what tests/test_logic_data.py leaves open: the exact parse errors
(where and what), token-list input, the truth tables of the six variables, the unknown
variable / operator errors, the degenerate relations, the generator's sides and bounds, and the
``python -m datamodules.logic_formulas`` writer (folder, output line, defaults)."""

from __future__ import annotations

import random

import pytest

from datamodules.logic_formulas import (
    ALL_TRUE,
    N_ASSIGNMENTS,
    VARIABLE_TABLES,
    FormulaError,
    count_operators,
    evaluate,
    main,
    parse,
    random_example,
    random_formula,
    relation_of_tables,
    truth_table,
    write_examples,
    _variable_table,
)
from tests.helpers import command_line_messages


# ----------------------------------------------------------------------------- parsing
def test_parse_accepts_a_list_or_tuple_of_tokens():
    assert parse(["(", "not", "a", ")"]) == ("not", "a")
    assert parse(("(", "b", "(", "or", "c", ")", ")")) == ("or", "b", "c")


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "empty formula"),
        ("   ", "empty formula"),
        ("a b", "unexpected 'b' at token 2 after a complete formula"),
        ("( a ( and b ) ) c", "unexpected 'c' at token 8 after a complete formula"),
        ("( not a", "expected ')' at token 4, found 'end of formula'"),
        ("( not a b", "expected ')' at token 4, found 'b'"),
        ("( a ( and b )", "expected ')' at token 7, found 'end of formula'"),
        ("( a and b )", "expected '(' at token 3, found 'and'"),
        ("( a ( xor b ) )", "expected 'and' or 'or' at token 4, found 'xor'"),
        ("( a (", "expected 'and' or 'or' at token 4, found 'end of formula'"),
        ("( a ( and", "formula ends too early"),
        ("(", "formula ends too early"),  # nothing after '(': neither 'not' nor a left argument
        ("( not", "formula ends too early"),
        ("g", "unexpected 'g' at token 1; expected a variable a-f or '('"),
        (")", "unexpected ')' at token 1; expected a variable a-f or '('"),
        ("( not g )", "unexpected 'g' at token 3; expected a variable a-f or '('"),
    ],
)
def test_parse_error_says_what_and_at_which_token(bad, message):
    """The whole message, token numbers 1-based: a user finds the bad token in a data line."""
    with pytest.raises(FormulaError) as err:
        parse(bad)
    assert str(err.value) == message


def test_parse_of_empty_token_list_is_an_empty_formula():
    with pytest.raises(FormulaError, match="^empty formula$"):
        parse([])


# ----------------------------------------------------------------------------- semantics
def test_variable_truth_tables_follow_the_assignment_bits():
    """Assignment k makes variable i true iff bit i of k is set, so over k = 0..63 variable a is
    true on the odd k (hex digit 0b1010 = A repeated), b on k mod 4 in {2, 3} (0b1100 = C),
    c on k mod 8 >= 4 (F0 bytes), d on k mod 16 >= 8, e on k mod 32 >= 16, f on k >= 32."""
    assert N_ASSIGNMENTS == 64 and ALL_TRUE == 2**64 - 1
    assert truth_table("a") == 0xAAAA_AAAA_AAAA_AAAA
    assert truth_table("b") == 0xCCCC_CCCC_CCCC_CCCC
    assert truth_table("c") == 0xF0F0_F0F0_F0F0_F0F0
    assert truth_table("d") == 0xFF00_FF00_FF00_FF00
    assert truth_table("e") == 0xFFFF_0000_FFFF_0000
    assert truth_table("f") == 0xFFFF_FFFF_0000_0000
    assert truth_table(("not", "a")) == 0x5555_5555_5555_5555  # complement within the 64 bits


def test_evaluate_treats_missing_variables_as_false():
    assert evaluate(("not", "c"), {}) is True
    assert evaluate("c", {"a": True}) is False
    assert evaluate(("or", "a", "f"), {"f": True}) is True  # f is the last variable (bit 5)
    assert evaluate(("and", "e", ("not", "b")), {"e": True, "b": True}) is False


@pytest.mark.parametrize(
    "formula, message",
    [
        ("g", "unknown variable 'g'; variables are a, b, c, d, e, f"),
        (("not", ("and", "a", "z")), "unknown variable 'z'; variables are a, b, c, d, e, f"),
        (("xor", "a", "b"), "unknown operator 'xor'; operators are not, and, or"),
        (("or", "a", ("nand", "b", "c")), "unknown operator 'nand'; operators are not, and, or"),
    ],
)
def test_truth_table_rejects_unknown_variables_and_operators(formula, message):
    """Hand-built tuples skip the parser, so the evaluator names what it does not know."""
    with pytest.raises(FormulaError) as err:
        truth_table(formula)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "premise, hypothesis, expected",
    [
        (0, 0, "="),  # two contradictions are equivalent
        (ALL_TRUE, ALL_TRUE, "="),
        (0, 0xAAAA_AAAA_AAAA_AAAA, "<"),  # the empty set is inside every set ...
        (0xAAAA_AAAA_AAAA_AAAA, 0, ">"),
        (0, ALL_TRUE, "<"),  # ... even the full one: '<' is checked before '^'
        (ALL_TRUE, 0, ">"),
        (0xAAAA_AAAA_AAAA_AAAA, ALL_TRUE, "<"),  # everything is inside the full set
        (ALL_TRUE, 0xAAAA_AAAA_AAAA_AAAA, ">"),
    ],
)
def test_relation_of_degenerate_tables(premise, hypothesis, expected):
    """Contradictions and tautologies are absent from Bowman's files; the documented order decides."""
    assert relation_of_tables(premise, hypothesis) == expected


# ----------------------------------------------------------------------------- generation
def test_random_formula_rejects_a_negative_count():
    with pytest.raises(ValueError) as err:
        random_formula(random.Random(0), -1)
    assert str(err.value) == "n_operators must be >= 0, got -1"


def test_random_example_puts_the_larger_formula_on_either_side():
    """The n-operator formula is the premise about half the time, the hypothesis otherwise; the
    other side has 0..n operators (a bare variable included); neither side is a contradiction or
    a tautology."""
    rng = random.Random(11)
    counts = set()
    for _ in range(400):
        _, premise, hypothesis = random_example(rng, 3)
        p, h = parse(premise), parse(hypothesis)
        counts.add((count_operators(p), count_operators(h)))
        assert truth_table(p) not in (0, ALL_TRUE) and truth_table(h) not in (0, ALL_TRUE)
    assert all(max(pair) == 3 for pair in counts)
    assert {(3, 0), (3, 1), (3, 2), (0, 3), (1, 3), (2, 3), (3, 3)} <= counts


def test_examples_from_two_operator_formulas_are_never_degenerate():
    """With 2 operators contradictions like ( a ( and ( not a ) ) ) exist; both sides skip them."""
    rng = random.Random(2)
    for _ in range(300):
        _, premise, hypothesis = random_example(rng, 2)
        for side in (premise, hypothesis):
            assert truth_table(parse(side)) not in (0, ALL_TRUE), side


# ----------------------------------------------------------------------------- the writer
def test_write_examples_makes_nested_folders_and_returns_the_path(tmp_path):
    target = tmp_path / "new" / "deeper" / "test3"
    assert write_examples(target, random.Random(0), 3, 4) == target
    lines = target.read_text().split("\n")
    assert len(lines) == 5 and lines[-1] == ""  # four lines, each ended by a newline
    assert all(len(line.split("\t")) == 3 for line in lines[:-1])


def test_main_defaults_seed_zero_and_reports_each_file(tmp_path, capsys):
    """Without --seed the generator starts from seed 0; the three lines were checked by hand:
    (d and c) vs (a and c), (not e) vs c and (c or a) vs (not e) each overlap, neither holds
    the other and all-false variables make both false, so all three are independent (#)."""
    out = tmp_path / "a" / "b"
    main(["--ops", "1", "--count", "3", "--out", str(out)])
    assert (out / "test1").read_text() == (
        "#\t( d ( and c ) )\t( a ( and c ) )\n"
        "#\t( not e )\tc\n"
        "#\t( c ( or a ) )\t( not e )\n"
    )
    assert capsys.readouterr().out == f"wrote 3 examples with 1 operators to {out / 'test1'}\n"


def test_main_writes_a_thousand_examples_per_file_by_default(tmp_path):
    main(["--ops", "0", "2", "--out", str(tmp_path)])
    for n in (0, 2):
        assert len((tmp_path / f"test{n}").read_text().splitlines()) == 1000


def test_each_variables_truth_table_is_its_bit_of_the_assignment_number():
    """Assignment k (0-63) sets variable i true when bit i of k is 1, so a variable's table is the
    classic alternating mask: a = 1010..., b = 1100..., up to f = 32 ones then 32 zeros (read from
    assignment 63 down). The tables are built when the module is imported, before any test could
    swap the builder, so the builder is checked here directly (breaks seen failing: `1 >> k`,
    `2 << k` for `1 << k`)."""
    masks = [0xAAAA_AAAA_AAAA_AAAA, 0xCCCC_CCCC_CCCC_CCCC, 0xF0F0_F0F0_F0F0_F0F0,
             0xFF00_FF00_FF00_FF00, 0xFFFF_0000_FFFF_0000, 0xFFFF_FFFF_0000_0000]
    assert [_variable_table(i) for i in range(6)] == masks
    assert VARIABLE_TABLES == dict(zip("abcdef", masks))


def test_command_line_help_and_its_required_arguments(capsys):
    """What `python -m datamodules.logic_formulas --help` tells a user (the name to call it by,
    what it writes and how to evaluate on it, each option), and that --ops and --out are required
    (breaks seen failing: the program's name, the description or an option's help changed, --ops
    not required)."""
    shown, error = command_line_messages(main, capsys)
    assert shown.startswith("usage: python -m datamodules.logic_formulas [-h] --ops OPS [OPS ...] [--count COUNT] "
                            "[--seed SEED] --out OUT ")
    assert ("Write new test files testN (N = number of operators) in Bowman's format. Evaluate on them with "
            "task.datamodule.test_dir=OUT task.datamodule.test_ops=[N,...].") in shown
    for option in ("--ops OPS [OPS ...] numbers of operators, e.g. 13 16 20", "--count COUNT examples per file",
                   "--out OUT output folder"):
        assert option in shown
    assert "the following arguments are required: --ops, --out" in error


def test_a_seed_given_on_the_command_line_is_the_number(tmp_path):
    """`--seed 0` is the default seed 0, not the text "0" (random.Random seeds a string otherwise):
    the same file as without --seed, whose lines were checked by hand above (break seen failing:
    --seed read without type=int)."""
    main(["--ops", "1", "--count", "3", "--out", str(tmp_path / "default")])
    main(["--ops", "1", "--count", "3", "--seed", "0", "--out", str(tmp_path / "given")])
    assert (tmp_path / "given" / "test1").read_text() == (tmp_path / "default" / "test1").read_text()

"""Propositional logic of Bowman, Manning & Potts (2015): formulas, truth tables, the 7 relations.

Formulas are written fully bracketed over the six variables ``a``..``f``, as in the data files:
``a``, ``( not X )``, ``( X ( and Y ) )``, ``( X ( or Y ) )``. In memory a formula is a nested
tuple: a variable name, ``("not", X)``, ``("and", X, Y)`` or ``("or", X, Y)``.

A formula's meaning is its truth table over the 64 assignments of the six variables, kept as a
64-bit integer (bit k is the value under assignment k, where variable i is true iff bit i of k is
set). The relation between two formulas is then a few set operations on those integers, so the
labels of the data are computed exactly, not learned; :func:`random_formula` and
:func:`random_example` make new examples with any number of operators (``python -m datamodules.logic_formulas``
writes them as data files).

Pure Python: no torch, no Lightning.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Union

VARIABLES = ("a", "b", "c", "d", "e", "f")
OPERATORS = ("not", "and", "or")
# the seven relations of MacCartney's natural logic, with the symbols of the data files
RELATIONS = ("=", "<", ">", "^", "|", "v", "#")
RELATION_NAMES = {
    "=": "equivalence",
    "<": "forward entailment",
    ">": "reverse entailment",
    "^": "negation",
    "|": "alternation",
    "v": "cover",
    "#": "independence",
}
# every token a formula string can contain
SYMBOLS = ("(", ")") + OPERATORS + VARIABLES

N_ASSIGNMENTS = 2 ** len(VARIABLES)
ALL_TRUE = (1 << N_ASSIGNMENTS) - 1

Formula = Union[str, tuple]


class FormulaError(ValueError):
    """A formula string that is not in the bracketed grammar; the message says where."""


def _variable_table(index: int) -> int:
    return sum(1 << k for k in range(N_ASSIGNMENTS) if (k >> index) & 1)


VARIABLE_TABLES = {name: _variable_table(i) for i, name in enumerate(VARIABLES)}


# ----------------------------------------------------------------------------- parsing
def parse(text: str | list[str]) -> Formula:
    """A bracketed formula string (or its whitespace tokens) -> nested tuple."""
    tokens = text.split() if isinstance(text, str) else list(text)
    if not tokens:
        raise FormulaError("empty formula")
    formula, end = _parse_at(tokens, 0)
    if end != len(tokens):
        raise FormulaError(f"unexpected {tokens[end]!r} at token {end + 1} after a complete formula")
    return formula


def _expect(tokens: list[str], pos: int, wanted: str) -> int:
    found = tokens[pos] if pos < len(tokens) else "end of formula"
    if found != wanted:
        raise FormulaError(f"expected {wanted!r} at token {pos + 1}, found {found!r}")
    return pos + 1


def _parse_at(tokens: list[str], pos: int) -> tuple[Formula, int]:
    """Parse one formula starting at ``pos``; return it and the position after it.

    Binary operators come as ``( X ( op Y ) )``: the operator and its right argument form their
    own bracket (Bowman's right-branching binarisation), so the grammar stays one token lookahead.
    """
    if pos >= len(tokens):
        raise FormulaError("formula ends too early")
    token = tokens[pos]
    if token in VARIABLES:
        return token, pos + 1
    if token != "(":
        raise FormulaError(f"unexpected {token!r} at token {pos + 1}; expected a variable a-f or '('")
    pos += 1
    if pos < len(tokens) and tokens[pos] == "not":
        child, pos = _parse_at(tokens, pos + 1)
        return ("not", child), _expect(tokens, pos, ")")
    left, pos = _parse_at(tokens, pos)
    pos = _expect(tokens, pos, "(")
    op = tokens[pos] if pos < len(tokens) else "end of formula"
    if op not in ("and", "or"):
        raise FormulaError(f"expected 'and' or 'or' at token {pos + 1}, found {op!r}")
    right, pos = _parse_at(tokens, pos + 1)
    pos = _expect(tokens, pos, ")")
    return (op, left, right), _expect(tokens, pos, ")")


def to_string(formula: Formula) -> str:
    """Nested tuple -> the bracketed string of the data files (inverse of :func:`parse`)."""
    if isinstance(formula, str):
        return formula
    if formula[0] == "not":
        return f"( not {to_string(formula[1])} )"
    op, left, right = formula
    return f"( {to_string(left)} ( {op} {to_string(right)} ) )"


def count_operators(formula: Formula) -> int:
    if isinstance(formula, str):
        return 0
    return 1 + sum(count_operators(child) for child in formula[1:])


# ----------------------------------------------------------------------------- semantics
def truth_table(formula: Formula) -> int:
    """The set of the 64 assignments that make the formula true, as a 64-bit integer."""
    if isinstance(formula, str):
        if formula not in VARIABLE_TABLES:
            raise FormulaError(f"unknown variable {formula!r}; variables are {', '.join(VARIABLES)}")
        return VARIABLE_TABLES[formula]
    op = formula[0]
    if op == "not":
        return ALL_TRUE & ~truth_table(formula[1])
    left, right = truth_table(formula[1]), truth_table(formula[2])
    if op == "and":
        return left & right
    if op == "or":
        return left | right
    raise FormulaError(f"unknown operator {op!r}; operators are {', '.join(OPERATORS)}")


def evaluate(formula: Formula, assignment: dict[str, bool]) -> bool:
    """The formula's value under one assignment of the six variables (missing ones are False)."""
    index = sum(1 << i for i, name in enumerate(VARIABLES) if assignment.get(name, False))
    return bool((truth_table(formula) >> index) & 1)


def relation_of_tables(premise: int, hypothesis: int) -> str:
    """The natural-logic relation between two truth tables (sets of assignments).

    Checked in this order, which agrees with every label of Bowman's files (all 249,069 pairs)
    and decides the degenerate cases (an empty or a full set, absent from those files): equal -> ``=``; premise inside hypothesis -> ``<``;
    hypothesis inside premise -> ``>``; disjoint -> ``^`` if together they cover every assignment,
    else ``|``; covering every assignment (overlapping) -> ``v``; otherwise ``#``.
    """
    if premise == hypothesis:
        return "="
    if premise & ~hypothesis & ALL_TRUE == 0:
        return "<"
    if hypothesis & ~premise & ALL_TRUE == 0:
        return ">"
    exhaustive = (premise | hypothesis) == ALL_TRUE
    if premise & hypothesis == 0:
        return "^" if exhaustive else "|"
    return "v" if exhaustive else "#"


def relation(premise: Formula | str, hypothesis: Formula | str) -> str:
    """The relation symbol between two formulas (nested tuples or bracketed strings)."""
    p = parse(premise) if isinstance(premise, str) else premise
    h = parse(hypothesis) if isinstance(hypothesis, str) else hypothesis
    return relation_of_tables(truth_table(p), truth_table(h))


# ----------------------------------------------------------------------------- generation
def random_formula(rng: random.Random, n_operators: int) -> Formula:
    """A random formula with exactly ``n_operators`` operators (not / and / or) over a..f.

    Each operator is drawn uniformly; a binary operator splits the remaining operators between
    its two arguments uniformly at random.
    """
    if n_operators < 0:
        raise ValueError(f"n_operators must be >= 0, got {n_operators}")
    if n_operators == 0:
        return rng.choice(VARIABLES)
    op = rng.choice(OPERATORS)
    rest = n_operators - 1
    if op == "not":
        return ("not", random_formula(rng, rest))
    left = rng.randint(0, rest)
    return (op, random_formula(rng, left), random_formula(rng, rest - left))


def random_satisfiable_formula(rng: random.Random, n_operators: int) -> Formula:
    """:func:`random_formula`, redrawn until it is neither a contradiction nor a tautology.

    Bowman's files hold no such top-level formula (checked over all 249,069 pairs; inner
    sub-formulas like ``( c ( and ( not c ) ) )`` do occur), so the generator leaves them out too.
    """
    while True:
        formula = random_formula(rng, n_operators)
        if truth_table(formula) not in (0, ALL_TRUE):
            return formula


def random_example(rng: random.Random, n_operators: int) -> tuple[str, str, str]:
    """(label, premise, hypothesis) where the larger formula has exactly ``n_operators`` operators,
    as in Bowman's ``trainN``/``testN`` files; the other has 0..n_operators, either side."""
    big = random_satisfiable_formula(rng, n_operators)
    small = random_satisfiable_formula(rng, rng.randint(0, n_operators))
    premise, hypothesis = (big, small) if rng.random() < 0.5 else (small, big)
    return relation(premise, hypothesis), to_string(premise), to_string(hypothesis)


def write_examples(path: str | Path, rng: random.Random, n_operators: int, count: int) -> Path:
    """Write ``count`` random examples as ``label<TAB>premise<TAB>hypothesis`` lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.writelines("\t".join(random_example(rng, n_operators)) + "\n" for _ in range(count))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.logic_formulas",
        description="Write new test files testN (N = number of operators) in Bowman's format. "
        "Evaluate on them with task.datamodule.test_dir=OUT task.datamodule.test_ops=[N,...].",
    )
    parser.add_argument("--ops", type=int, nargs="+", required=True, help="numbers of operators, e.g. 13 16 20")
    parser.add_argument("--count", type=int, default=1000, help="examples per file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    for n in args.ops:
        path = write_examples(Path(args.out) / f"test{n}", rng, n, args.count)
        print(f"wrote {args.count} examples with {n} operators to {path}")


if __name__ == "__main__":
    main()

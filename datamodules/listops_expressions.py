"""ListOps (Nangia & Bowman 2018): expressions, their values, gold trees, and the released file format.

An expression is a digit ``0``..``9`` or an operator application ``[OP a1 ... ak ]`` in prefix
notation, OP one of MIN, MAX, MED (median, rounded down) and SM (sum modulo 10), e.g.
``[MAX 2 9 [MIN 4 7 ] 0 ]`` = 9. In memory a digit is an ``int`` and an application the tuple
``(operator token, (argument, ...))``, e.g. ``("[MAX", (2, 9, ("[MIN", (4, 7)), 0))``.

The released file (``listops/test_d20s.tsv``) holds one ``label<TAB>expression`` a line, the
expression written with round brackets that record the binarised tree the published generator
builds (an application ``[OP a b c ]`` is ``( ( ( ( [OP a ) b ) c ) ] )``). The tokens a model
reads are the expression without the round brackets: ``[OP`` tokens, digits and ``]``.

Gold trees, over that bracket-free token sequence: one constituent per operator application,
the half-open span from its ``[OP`` token to its ``]`` token inclusive, unlabelled. A
single-digit expression has none; an expression that is one application has its whole-sequence
span among them. :func:`score_trees` / :func:`tree_f1` score induced trees against these spans
with the parsing task's own metric functions (:mod:`onlstm.parsing.metrics`).

Pure Python besides the parsing metrics: no torch, no Lightning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from datamodules.files import DataError, read_lines
from onlstm.parsing.metrics import evaluate_trees, sentence_f1
from onlstm.parsing.trees import Tree, leaves, tree_from_spans

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
DIGITS = tuple(str(d) for d in range(10))
SYMBOLS = DIGITS + OPERATORS + (END,)  # every token a model reads
ROUND = ("(", ")")  # only record the binarised tree; not part of the expression

Expression = Union[int, tuple]


class ExpressionError(ValueError):
    """A token sequence that is not one ListOps expression; the message says where and why."""


# ----------------------------------------------------------------------------- reading tokens
def strip_round_brackets(tokens: Sequence[str]) -> list[str]:
    """The tokens without ``(`` and ``)``, after checking that the round brackets balance."""
    open_round = 0
    kept = []
    for position, token in enumerate(tokens, start=1):
        if token == "(":
            open_round += 1
        elif token == ")":
            open_round -= 1
            if open_round < 0:
                raise ExpressionError(f"token {position}: ')' closes no '('")
        else:
            kept.append(token)
    if open_round:
        raise ExpressionError(f"{open_round} round bracket(s) '(' never closed")
    return kept


def parse(tokens: Sequence[str]) -> Expression:
    """One expression from bracket-free tokens; anything else (an unknown token, ``[OP`` without
    its ``]`` or an argument, a stray ``]``, two expressions side by side) is an ExpressionError."""
    if not tokens:
        raise ExpressionError("empty expression")
    stack: list[tuple[str, list]] = []  # open applications: (operator, arguments so far)
    done: list[Expression] = []  # complete top-level expressions
    for position, token in enumerate(tokens, start=1):
        if token in OPERATORS:
            stack.append((token, []))
            continue
        if token == END:
            if not stack:
                raise ExpressionError(f"token {position}: ']' closes no operator")
            operator, arguments = stack.pop()
            if not arguments:
                raise ExpressionError(f"token {position}: {operator} has no argument")
            node: Expression = (operator, tuple(arguments))
        elif token in DIGITS:
            node = int(token)
        else:
            raise ExpressionError(
                f"token {position}: unknown token {token!r}; expressions use {' '.join(SYMBOLS)} "
                "and the round brackets ( ), separated by spaces"
            )
        (stack[-1][1] if stack else done).append(node)
    if stack:
        raise ExpressionError(f"{len(stack)} operator(s) never closed with ']' (innermost {stack[-1][0]})")
    if len(done) != 1:
        raise ExpressionError(f"{len(done)} expressions side by side; a line holds one")
    return done[0]


# ----------------------------------------------------------------------------- meaning and shape
def apply_operator(operator: str, values: Sequence[int]) -> int:
    """The published ``to_value`` (nyu-mll/spinn ``python/spinn/data/listops/make_data.py``): MED
    is ``int(np.median(values))``, the median with the two middle values averaged and then
    truncated, i.e. rounded down (all values are >= 0); SM is ``np.sum(values) % 10``."""
    if operator == "[MIN":
        return min(values)
    if operator == "[MAX":
        return max(values)
    if operator == "[MED":
        ordered = sorted(values)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) // 2
    if operator == "[SM":
        return sum(values) % 10
    raise ValueError(f"unknown operator {operator!r}; one of {OPERATORS}")


def evaluate(expression: Expression) -> int:
    if isinstance(expression, int):
        return expression
    operator, arguments = expression
    return apply_operator(operator, [evaluate(a) for a in arguments])


def to_tokens(expression: Expression) -> list[str]:
    """The bracket-free token sequence a model reads."""
    if isinstance(expression, int):
        return [str(expression)]
    operator, arguments = expression
    return [operator, *(t for a in arguments for t in to_tokens(a)), END]


def to_released(expression: Expression) -> str:
    """The released file's spelling, with the published generator's binarising round brackets:
    ``(op, a1)``, then ``(previous, a2)`` ... and ``(previous, ])``, each pair written
    ``( left right )`` (``generate_tree`` / ``to_string`` of make_data.py)."""
    if isinstance(expression, int):
        return str(expression)
    operator, arguments = expression
    text = operator
    for part in [*(to_released(a) for a in arguments), END]:
        text = f"( {text} {part} )"
    return text


def depth(expression: Expression) -> int:
    """Maximum nesting of operators: a digit 0, ``[MAX 2 9 ]`` 1, ``[MAX 2 [MIN 4 7 ] ]`` 2."""
    if isinstance(expression, int):
        return 0
    return 1 + max(depth(a) for a in expression[1])


def gold_spans(expression: Expression) -> list[tuple[int, int]]:
    """Half-open token spans ``(start, end)`` of every operator application, ``[OP`` to ``]``
    inclusive, over the bracket-free tokens, in pre-order (outer before inner, left to right)."""
    found: list[tuple[int, int]] = []

    def walk(node: Expression, start: int) -> int:
        if isinstance(node, int):
            return start + 1
        slot = len(found)
        found.append((start, start))  # placeholder: the end is known after the arguments
        end = start + 1
        for argument in node[1]:
            end = walk(argument, end)
        found[slot] = (start, end + 1)
        return end + 1

    walk(expression, 0)
    return found


# ----------------------------------------------------------------------------- the file format
@dataclass(frozen=True)
class ListOpsItem:
    """One labelled expression as the datamodule needs it."""

    tokens: tuple[str, ...]  # bracket-free
    label: int
    spans: tuple[tuple[int, int], ...]  # gold constituents (:func:`gold_spans`)
    depth: int

    @property
    def length(self) -> int:
        return len(self.tokens)


def make_item(expression: Expression, label: int | None = None) -> ListOpsItem:
    """The item of an expression; ``label`` defaults to its value."""
    return ListOpsItem(
        tuple(to_tokens(expression)),
        evaluate(expression) if label is None else label,
        tuple(gold_spans(expression)),
        depth(expression),
    )


def format_line(expression: Expression) -> str:
    """``label<TAB>expression`` as in the released file, the label computed by :func:`evaluate`."""
    return f"{evaluate(expression)}\t{to_released(expression)}"


def read_listops(path: str | Path, what: str = "ListOps data") -> list[ListOpsItem]:
    """Every line of a released-format file; a bad line is a DataError naming the file and line."""
    items = []
    for number, line in read_lines(path, what):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{path}:{number}: expected 2 tab-separated fields (LABEL, EXPRESSION), found {len(fields)}"
            )
        label, text = fields
        if label not in DIGITS:
            raise DataError(f"{path}:{number}: label {label!r} is not a digit 0-9 (the value of the expression)")
        try:
            expression = parse(strip_round_brackets(text.split()))
        except ExpressionError as err:
            raise DataError(f"{path}:{number}: {err}") from None
        items.append(make_item(expression, int(label)))
    if not items:
        raise DataError(f"{path}: the file is empty; it needs LABEL<TAB>EXPRESSION lines")
    return items


# ----------------------------------------------------------------------------- scoring induced trees
def gold_tree(spans: Iterable[tuple[int, int]], length: int) -> Tree:
    """The gold constituents as a nested-list tree over ``length`` placeholder leaves, the form
    :mod:`onlstm.parsing.metrics` scores (its ``spans`` give back ``spans`` plus the whole sequence)."""
    return tree_from_spans([str(i) for i in range(length)], spans)


def tree_f1(pred: Tree, spans: Iterable[tuple[int, int]], length: int) -> float:
    """Sentence-level F1 of one induced tree against the gold spans: the parsing task's
    :func:`onlstm.parsing.metrics.sentence_f1`, the same function, so the same convention:

    * only spans of two or more tokens count (single tokens never do);
    * the whole-sequence span is left out on both sides, so an expression that is one operator
      application scores its inner applications only;
    * with no gold span left (a digit, or one application whose arguments are all digits, like
      ``[MAX 2 9 ]``), recall is 1 and precision is 1 only when the induced tree has no span
      either: a binary tree over three or more tokens always has one, so it scores 0 there.

    The gold tree is n-ary and an induced tree binary, so even the best binary tree has
    precision below 1 on most expressions (as on the treebank)."""
    if len(leaves(pred)) != length:
        raise ValueError(f"the induced tree has {len(leaves(pred))} leaves, the expression {length} tokens")
    return sentence_f1(pred, gold_tree(spans, length))


def score_trees(
    preds: Sequence[Tree], spans: Sequence[Iterable[tuple[int, int]]], lengths: Sequence[int]
) -> dict[str, Any]:
    """Every parsing metric of the treebank task (:func:`onlstm.parsing.metrics.evaluate_trees`:
    ``f1_sentence`` as in :func:`tree_f1` averaged over expressions, EVALB-style ``f1_corpus``
    with the whole-sequence span counted, ``depth`` of the induced trees) against ListOps gold spans."""
    if not len(preds) == len(spans) == len(lengths):
        raise ValueError(f"got {len(preds)} trees, {len(spans)} span lists and {len(lengths)} lengths")
    for i, (pred, length) in enumerate(zip(preds, lengths)):
        if len(leaves(pred)) != length:
            raise ValueError(f"tree {i} has {len(leaves(pred))} leaves, its expression {length} tokens")
    return evaluate_trees(list(preds), [gold_tree(s, n) for s, n in zip(spans, lengths)])

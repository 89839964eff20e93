"""New ListOps expressions from the published generator's distribution, drawn at a chosen length.

The published generator (``generate_tree`` of ``python/spinn/data/listops/make_data.py`` in
nyu-mll/spinn, read here in the ON-LSTM authors' copy, yikangshen/Ordered-Neurons, branch
``listops``, commit ddb18c3bd529f91e71ab5591092015b07647b755, ``data/listops/make_data.py``)
draws a tree top-down from depth 1:

* at depth < ``MAX_DEPTH`` = 20 a node is a value when ``random.random() > VALUE_P`` with
  ``VALUE_P = 0.25`` (probability 0.75), else an operator; at depth 20 it is always a value, so
  operators nest at most 19 deep;
* a value is ``random.choice(range(10))``: uniform over 0-9;
* an operator node has ``random.randint(2, MAX_ARGS)`` arguments, ``MAX_ARGS = 5`` (uniform over
  2-5), each drawn the same way one level deeper, and its operator is ``random.choice`` of MIN,
  MAX, MED, SM (uniform; FIRST and LAST are commented out there);
* it keeps distinct trees only (a ``set``) and has no length limit.

These match the data README (section 6). Here the same distribution is drawn *conditioned on
the length* (tokens without round brackets) lying in ``[min_length, max_length]``: exactly what
rejection sampling from ``generate_tree`` gives (draw, keep when the length is in range), but
without the rejections, which are impractical for long expressions: a published draw has
900-1000 tokens with probability 1.35e-5, so 300 of them need some 2*10^7 draws, 3 to 4 minutes
here against 1 to 2.5 s for this draw (``benchmarks/listops_generation.py``, table in
``benchmarks/results/listops_generation_cpu.md``). The long test sets therefore differ from the
published distribution only by being conditioned on their length, as rejection would make them.

How: :class:`LengthTables` holds, for every depth d and length l <= max_length, the probability
``P_d(l)`` that a subtree rooted at depth d has l tokens under the published distribution (a
value: 1 token; an operator with k arguments: 2 + the arguments' lengths), and the k-fold
convolutions of ``P_{d+1}``. A draw picks the total length from ``P_1`` restricted to the range,
then top-down, for a node at depth d of length l: a value if l == 1, else an operator whose
argument count k is drawn in proportion to ``P(k) * P(k arguments at depth d+1 total l - 2)``,
and whose arguments' lengths are drawn one after another given what is left. Each step is the
exact conditional of the published draw, so the trees follow the published distribution given
their length; operator and value choices do not depend on length and stay uniform. Distinct
expressions only, as in make_data.py; expressions whose token sequence occurs in an excluded
set (e.g. the released test file) are drawn again.

``python -m datamodules.listops_generator --count N --min-length A --max-length B --seed S
[--exclude FILE ...] --out FILE`` writes them in the released format (:mod:`datamodules.listops_expressions`).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from datamodules.files import DataError
from datamodules.listops_expressions import OPERATORS, Expression, format_line, read_listops, to_tokens

VALUE_P = 0.25  # make_data.py: an operator when random() <= VALUE_P, i.e. a value with probability 0.75
MAX_ARGS = 5  # arguments: randint(2, MAX_ARGS)
MIN_ARGS = 2
MAX_DEPTH = 20  # depth of the root is 1; a node at depth MAX_DEPTH is always a value
ARG_COUNTS = tuple(range(MIN_ARGS, MAX_ARGS + 1))
# the length tables grow with the square of the longest length (4 s at 20,000 tokens); a published
# draw is longer than 5,000 tokens about once in 10^11
LONGEST = 20_000

# a request gives up after this many draws per wanted expression (and at least MIN_ATTEMPTS):
# repeats and excluded expressions only, once the length range holds too few distinct expressions
ATTEMPTS_PER_EXPRESSION = 50
MIN_ATTEMPTS = 10_000


def published_draw(rng: random.Random, depth: int = 1) -> Expression:
    """One tree exactly as make_data.py's ``generate_tree(depth)`` draws it (same calls, same
    order; its ``(op, a1) ... ]`` nesting written as ``(op, (a1, ...))``): the reference that
    :func:`draw` reproduces given a length, and what rejection sampling would draw from."""
    r = rng.random() if depth < MAX_DEPTH else 1
    if r > VALUE_P:
        return rng.choice(range(10))
    arguments = tuple(published_draw(rng, depth + 1) for _ in range(rng.randint(MIN_ARGS, MAX_ARGS)))
    return rng.choice(OPERATORS), arguments


class GenerationError(ValueError):
    """A request the generator cannot satisfy; the message says what to change."""


class LengthTables:
    """Length distributions of subtrees under the published distribution, up to ``max_length``.

    ``sums[d][j][l]``: probability that j independent subtrees rooted at depth d have l tokens
    together (j = 1: one subtree, ``P_d``), for l = 0..max_length; lengths above max_length are
    never needed, since no part of an expression is longer than the whole.
    """

    def __init__(self, max_length: int):
        if max_length > LONGEST:
            raise GenerationError(f"max_length {max_length} is above the {LONGEST} tokens the generator supports")
        self.max_length = max_length
        size = max_length + 1
        self.sums: dict[int, dict[int, np.ndarray]] = {}
        single = np.zeros(size)
        single[1] = 1.0  # depth MAX_DEPTH: always a value
        for d in range(MAX_DEPTH, 0, -1):
            if d < MAX_DEPTH:
                single = np.zeros(size)
                single[1] = 1.0 - VALUE_P
                below = self.sums[d + 1]
                for k in ARG_COUNTS:  # operator (VALUE_P) with k arguments (1/4 each) of length l - 2
                    single[2:] += VALUE_P / len(ARG_COUNTS) * below[k][: size - 2]
            self.sums[d] = self._powers(single)

    def _powers(self, single: np.ndarray) -> dict[int, np.ndarray]:
        powers = {1: single}
        for j in range(2, MAX_ARGS + 1):
            powers[j] = np.convolve(powers[j - 1], single)[: self.max_length + 1]
        return powers

    def mass(self, min_length: int, max_length: int) -> float:
        """Probability that a published draw has between min_length and max_length tokens."""
        return float(self.sums[1][1][min_length : max_length + 1].sum())


def _choose(rng: random.Random, weights: np.ndarray) -> int:
    """An index drawn in proportion to ``weights`` (non-negative, not all zero)."""
    cumulative = np.cumsum(weights)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    if index == len(weights):  # rounding put the draw on the total: the last index with weight
        index = int(np.flatnonzero(weights)[-1])
    return index


def draw_tree(rng: random.Random, tables: LengthTables, length: int, depth: int = 1) -> Expression:
    """A tree of exactly ``length`` tokens rooted at ``depth``, from the published distribution
    given that length (the length must be possible there: ``tables.sums[depth][1][length] > 0``)."""
    if length == 1:
        return rng.randrange(10)
    below = tables.sums[depth + 1]
    inside = length - 2  # tokens of the arguments
    k = ARG_COUNTS[_choose(rng, np.array([below[k][inside] for k in ARG_COUNTS]))]
    lengths = []
    for remaining in range(k, 1, -1):  # arguments still to place, this one included
        # this argument m tokens, the other remaining - 1 arguments inside - m together
        candidates = np.arange(1, inside - (remaining - 1) + 1)
        weights = below[1][candidates] * below[remaining - 1][inside - candidates]
        m = int(candidates[_choose(rng, weights)])
        lengths.append(m)
        inside -= m
    lengths.append(inside)
    operator = rng.choice(OPERATORS)
    return operator, tuple(draw_tree(rng, tables, m, depth + 1) for m in lengths)


def length_weights(tables: LengthTables, min_length: int, max_length: int) -> np.ndarray:
    """``P_1(l)`` for l = min_length..max_length: how a published draw's length falls in the range."""
    if min_length < 1:
        raise GenerationError(f"min_length must be at least 1, got {min_length}")
    if min_length > max_length:
        raise GenerationError(f"min_length {min_length} is above max_length {max_length}: give min <= max")
    if tables.max_length < max_length:
        raise ValueError(f"the tables reach {tables.max_length} tokens, not {max_length}")
    weights = tables.sums[1][1][min_length : max_length + 1]
    if weights.sum() <= 0:
        raise GenerationError(
            f"no expression has {min_length}-{max_length} tokens (lengths are 1 or at least 4; "
            f"operators nest at most {MAX_DEPTH - 1} deep): widen the range"
        )
    return weights


def draw(rng: random.Random, tables: LengthTables, min_length: int, weights: np.ndarray) -> Expression:
    """One tree from the published distribution given a length in ``min_length`` ..
    ``min_length + len(weights) - 1`` (``weights``: :func:`length_weights`)."""
    return draw_tree(rng, tables, min_length + _choose(rng, weights))


def generate(
    count: int,
    min_length: int,
    max_length: int,
    seed: int | str,
    exclude: Iterable[tuple[str, ...]] = (),
    tables: LengthTables | None = None,
) -> list[Expression]:
    """``count`` distinct expressions of ``min_length``..``max_length`` tokens, none of whose token
    sequences is in ``exclude``, in the order drawn; the same for the same arguments."""
    if count < 1:
        raise GenerationError(f"count must be at least 1, got {count}")
    if tables is None or tables.max_length < max(max_length, min_length):
        tables = LengthTables(max(max_length, min_length))
    weights = length_weights(tables, min_length, max_length)
    rng = random.Random(f"listops:{seed}")
    excluded = set(exclude)
    seen: set[tuple[str, ...]] = set()
    found: list[Expression] = []
    attempts = max(MIN_ATTEMPTS, ATTEMPTS_PER_EXPRESSION * count)
    for _ in range(attempts):
        tree = draw(rng, tables, min_length, weights)
        tokens = tuple(to_tokens(tree))
        if tokens in seen or tokens in excluded:
            continue
        seen.add(tokens)
        found.append(tree)
        if len(found) == count:
            return found
    raise GenerationError(
        f"only {len(found)} of {count} distinct expressions of {min_length}-{max_length} tokens "
        f"(not among the {len(excluded)} excluded) came in {attempts} draws: the range holds too few "
        "distinct expressions; ask for fewer or widen the length range"
    )


def write_expressions(path: Path, expressions: Iterable[Expression]) -> int:
    lines = [format_line(e) + "\n" for e in expressions]
    with open(path, "w") as handle:
        handle.writelines(lines)
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.listops_generator",
        description="Write distinct ListOps expressions of a chosen length range, drawn from the published "
        "generator's distribution (nyu-mll/spinn make_data.py), as label<TAB>expression lines with the "
        "binarising round brackets of the released test file.",
    )
    parser.add_argument("--count", type=int, required=True, help="number of expressions")
    parser.add_argument("--min-length", type=int, required=True, help="fewest tokens (round brackets not counted)")
    parser.add_argument("--max-length", type=int, required=True, help="most tokens (round brackets not counted)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", nargs="*", default=[], help="released-format files none of whose expressions may be drawn")
    parser.add_argument("--out", required=True, help="output file (refused if it exists, unless --force)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        parser.error(f"{out} exists; pick another --out, or add --force to overwrite it")
    try:
        excluded = set(itertools.chain.from_iterable(
            (item.tokens for item in read_listops(path, "--exclude")) for path in args.exclude
        ))
        start = time.perf_counter()
        expressions = generate(args.count, args.min_length, args.max_length, args.seed, excluded)
    except (DataError, GenerationError) as err:
        parser.error(str(err))
    out.parent.mkdir(parents=True, exist_ok=True)
    written = write_expressions(out, expressions)
    mass = LengthTables(args.max_length).mass(args.min_length, args.max_length)
    print(
        f"wrote {written} expressions of {args.min_length}-{args.max_length} tokens (seed {args.seed}) to {out} "
        f"in {time.perf_counter() - start:.1f} s; a published draw has such a length with probability {mass:.3g}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

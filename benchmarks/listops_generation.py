"""ListOps generation: rejection sampling from the published generator (make_data.py's
``generate_tree``) against the length-conditioned draw of ``datamodules.listops_generator``.

For each length range: the probability that a published draw falls in it (exact, from the
length tables, and counted over --draws published draws), the seconds rejection sampling would
need for --count such expressions at the measured draw rate, and the seconds the
length-conditioned draw takes for them (distinct, nothing excluded).

    python benchmarks/listops_generation.py [--draws 2000000] [--count 300]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import print_title  # noqa: E402  (after the sys.path line)
from datamodules.listops_expressions import to_tokens  # noqa: E402
from datamodules.listops_generator import LengthTables, generate, published_draw  # noqa: E402

RANGES = [(3, 100), (200, 300), (500, 600), (900, 1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2_000_000, help="published draws to count hits over")
    parser.add_argument("--count", type=int, default=300, help="expressions per range")
    args = parser.parse_args()
    print_title("ListOps generation: rejection vs length-conditioned draw")
    rng = random.Random(0)
    hits = dict.fromkeys(RANGES, 0)
    start = time.perf_counter()
    for _ in range(args.draws):
        length = len(to_tokens(published_draw(rng)))
        for low, high in RANGES:
            hits[(low, high)] += low <= length <= high
    rate = args.draws / (time.perf_counter() - start)
    print(f"{args.draws:,} published draws at {rate:,.0f} draws/s (tree and token count); {args.count} expressions per range.\n")
    print("| tokens | P(published draw in range), exact | hits in the published draws | rejection: s for the count (estimate) | conditioned draw: s for the count |")
    print("|---|---:|---:|---:|---:|")
    tables = LengthTables(max(high for _, high in RANGES))
    for low, high in RANGES:
        mass = tables.mass(low, high)
        began = time.perf_counter()
        generate(args.count, low, high, seed=0, tables=tables)
        conditioned = time.perf_counter() - began
        print(f"| {low}-{high} | {mass:.3g} | {hits[(low, high)]:,} | {args.count / mass / rate:,.1f} | {conditioned:.2f} |")


if __name__ == "__main__":
    main()

"""DropConnect mask sampling for the hidden weights: bernoulli_ and a multiply against uniform < p
with a select or a multiply (the last is what ``onlstm.regularizers.LinearDropConnect.sampled_weight``
does), forward and backward, interleaved medians of --repeats calls, at the ON-LSTM weight shapes.

    python benchmarks/dropconnect.py [--repeats 15]
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import interleaved_medians, parse_repeats, print_title  # noqa: E402  (after the sys.path line)

KEEP = 1.0 - 0.45  # the paper's wdrop
SHAPES = [("paper layers 1-2 W_hh", 4830, 1150), ("paper layer 3 W_hh", 1680, 400), ("small layer W_hh", 1088, 256)]
SAMPLERS = {
    "bernoulli_ * weight": lambda w: w * torch.empty_like(w).bernoulli_(KEEP),
    "where(rand < p, weight, 0)": lambda w: torch.where(torch.rand_like(w) < KEEP, w, 0.0),
    "weight * (rand < p)": lambda w: w * (torch.rand_like(w) < KEEP).to(w.dtype),
}


def forward_backward(sampler, weight: torch.Tensor, grad: torch.Tensor) -> None:
    sampler(weight).backward(grad)
    weight.grad = None


def main() -> None:
    repeats = parse_repeats(__doc__, default=15)
    print_title("DropConnect mask sampling")
    print(f"Forward + backward of the masked weight, median of {repeats} interleaved repeats.\n")
    print("| weight | shape | sampler | median (ms) | vs bernoulli_ |")
    print("|---|---|---|---:|---:|")
    for name, rows, cols in SHAPES:
        weight = torch.randn(rows, cols, requires_grad=True)
        grad = torch.randn(rows, cols)
        paths = {sampler: functools.partial(forward_backward, fn, weight, grad) for sampler, fn in SAMPLERS.items()}
        medians = interleaved_medians(paths, repeats)
        base = medians["bernoulli_ * weight"]
        for sampler, median in medians.items():
            print(f"| {name} | {rows} x {cols} | `{sampler}` | {1000 * median:.1f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()

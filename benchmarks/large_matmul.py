"""The large products of a CPU training step: torch.mm (MKL) against oneDNN's matmul.

Every layer's input projection for all steps, its input gradient and both weight gradients are
one large product each (``onlstm.ops.cpu``). This times them at the shapes of the two
benchmark configurations, as ``torch.mm`` and as oneDNN's matmul (``mkldnn._linear_pointwise``
after ``mkldnn._reorder_linear_weight``, the reorder timed with it), with contiguous operands and
with the transposed operands the weight gradients have (``d_gates^T @ inputs``); interleaved
medians of --repeats calls. ``onlstm.ops.cpu.ONEDNN_MIN_MACS`` is set from this table.

    python benchmarks/large_matmul.py [--repeats 9]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import interleaved_medians, parse_repeats, print_title  # noqa: E402  (after the sys.path line)
from onlstm.ops.shared import RepeatedMatmul  # noqa: E402

# (product, m, k, n): an (m x k) @ (k x n) product of a training step
SHAPES = [
    ("small: layer 1 input projection", 1120, 200, 1088),
    ("small: layer 2 input projection", 1120, 256, 1088),
    ("small: dW_hh (rows x T*B @ T*B x hidden)", 1088, 1120, 256),
    ("small: layer 2 input gradient", 1120, 1088, 256),
    ("paper: layer 1 input projection", 1400, 400, 4830),
    ("paper: layer 1 dW_ih", 4830, 1400, 400),
    ("paper: layer 2 projection / input gradient", 1400, 1150, 4830),
    ("paper: layers 1-2 dW_hh", 4830, 1400, 1150),
    ("paper: layer 3 input projection", 1400, 1150, 1680),
    ("paper: layer 3 dW_hh", 1680, 1400, 400),
    ("paper: layer 3 input gradient", 1400, 1680, 1150),
]


def onednn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b as oneDNN's matmul: linear(a, b^T), b^T reordered in the call."""
    return RepeatedMatmul(b.t(), a.size(0))(a)


def main() -> None:
    repeats = parse_repeats(__doc__, default=9)
    print_title("Large matmuls: torch.mm (MKL) vs oneDNN")
    print(f"Median ms of {repeats} interleaved repeats; GFLOP/s = 2 m k n / time. 'transposed': ")
    print("the left operand is a transposed view (as d_gates^T in a weight gradient); oneDNN copies it.\n")
    print("| product | m x k x n (1e9 MACs) | operands | torch.mm ms (GFLOP/s) | oneDNN ms (GFLOP/s) | oneDNN speed-up |")
    print("|---|---|---|---:|---:|---:|")
    for name, m, k, n in SHAPES:
        operands = {"contiguous": torch.randn(m, k), "transposed": torch.randn(k, m).t()}
        b = torch.randn(k, n)
        for layout, a in operands.items():
            paths = {"mm": lambda: torch.mm(a, b), "onednn": lambda: onednn(a, b)}
            med = interleaved_medians(paths, repeats)
            flop = 2 * m * k * n
            cells = [f"{1000 * med[p]:.1f} ({flop / med[p] / 1e9:.0f})" for p in ("mm", "onednn")]
            print(
                f"| {name} | {m} x {k} x {n} ({m * k * n / 1e9:.2f}) | {layout} | {cells[0]} | {cells[1]} "
                f"| {med['mm'] / med['onednn']:.2f}x |"
            )


if __name__ == "__main__":
    main()

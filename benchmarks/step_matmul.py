"""The per-step matmul of the CPU recurrence: torch.mm against oneDNN's prepacked matmul.

Each step of a layer multiplies a (batch x hidden) state by the same hidden weight
(``onlstm.ops.shared.RepeatedMatmul``). This times, for the shapes of the benchmarks and of parsing,
``torch.mm`` against ``mkldnn._linear_pointwise`` on a weight reordered once
(``mkldnn._reorder_linear_weight``), forward (h W^T) and backward (dgates W), and the reorder
itself: of W, of the transposed view W^T (PyTorch copies it), and of W^T copied first by the C
transpose (what the backward does); medians of --repeats calls.

    python benchmarks/step_matmul.py [--repeats 100]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import interleaved_medians, parse_repeats, print_title  # noqa: E402  (after the sys.path line)
from onlstm.ops.cpu import transposed  # noqa: E402

# (what, batch, hidden, gate rows)
SHAPES = [
    ("small config layer", 32, 256, 1088),
    ("paper config layers 1-2 (training)", 20, 1150, 4830),
    ("paper config layer 3 (training)", 20, 400, 1680),
    ("paper layers 1-2, batch-1 parsing", 1, 1150, 4830),
    ("paper layers 1-2, batched parsing", 256, 1150, 4830),
]


def main() -> None:
    repeats = parse_repeats(__doc__, default=100)
    torch.manual_seed(0)
    rows = [
        "| shape | batch x hidden -> rows | reorder W (us) | reorder W^T view (us) | C transpose + reorder W^T (us) "
        "| forward mm (us) | forward packed (us) | speed-up | backward mm (us) | backward packed (us) | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for what, batch, hidden, gate_rows in SHAPES:
        h, w, d_gates = torch.randn(batch, hidden), torch.randn(gate_rows, hidden), torch.randn(batch, gate_rows)
        w_t = w.t().contiguous()
        reorders = interleaved_medians(
            {
                "w": lambda: torch.ops.mkldnn._reorder_linear_weight(w, batch),
                # what the backward must reorder: W^T, a transposed view of the weight
                "w.t()": lambda: torch.ops.mkldnn._reorder_linear_weight(w.t(), batch),
                "transposed": lambda: torch.ops.mkldnn._reorder_linear_weight(transposed(w), batch),
            },
            max(10, repeats // 10),
        )
        packed_fwd = torch.ops.mkldnn._reorder_linear_weight(w, batch)
        packed_bwd = torch.ops.mkldnn._reorder_linear_weight(w_t, batch)
        med = interleaved_medians(
            {
                "fwd_mm": lambda: torch.mm(h, w.t()),
                "fwd_packed": lambda: torch.ops.mkldnn._linear_pointwise(h, packed_fwd, None, "none", [], ""),
                "bwd_mm": lambda: torch.mm(d_gates, w_t.t()),
                "bwd_packed": lambda: torch.ops.mkldnn._linear_pointwise(d_gates, packed_bwd, None, "none", [], ""),
            },
            repeats,
            warmup=5,
        )
        us = {name: 1e6 * t for name, t in {**reorders, **med}.items()}
        rows.append(
            f"| {what} | {batch} x {hidden} -> {gate_rows} | {us['w']:,.0f} | {us['w.t()']:,.0f} | {us['transposed']:,.0f} "
            f"| {us['fwd_mm']:,.0f} | {us['fwd_packed']:,.0f} | {us['fwd_mm'] / us['fwd_packed']:.2f}x "
            f"| {us['bwd_mm']:,.0f} | {us['bwd_packed']:,.0f} | {us['bwd_mm'] / us['bwd_packed']:.2f}x |"
        )
    print_title("Per-step matmul: torch.mm vs oneDNN prepacked")
    print(f"Median of {repeats} interleaved calls (the reorders: a tenth as many).\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

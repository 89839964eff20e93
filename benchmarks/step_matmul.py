"""The per-step matmul of the CPU recurrence: torch.mm against oneDNN's prepacked matmul.

Each step of a layer multiplies a (batch x hidden) state by the same hidden weight
(``onlstm.fused._RepeatedMatmul``). This times, for the shapes of the benchmarks and of parsing,
``torch.mm`` against ``mkldnn._linear_pointwise`` on a weight reordered once
(``mkldnn._reorder_linear_weight``), forward (h W^T) and backward (dgates W), and the reorder
itself; medians of --repeats calls.

    python benchmarks/step_matmul.py [--repeats 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header  # noqa: E402  (after the sys.path line)

# (what, batch, hidden, gate rows)
SHAPES = [
    ("small config layer", 32, 256, 1040),
    ("paper config layers 1-2 (training)", 20, 1150, 4830),
    ("paper config layer 3 (training)", 20, 400, 1680),
    ("paper layers 1-2, batch-1 parsing", 1, 1150, 4830),
    ("paper layers 1-2, batched parsing", 256, 1150, 4830),
]


def median_us(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [
        "| shape | batch x hidden -> rows | reorder (us) | forward mm (us) | forward packed (us) | speed-up "
        "| backward mm (us) | backward packed (us) | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for what, batch, hidden, gate_rows in SHAPES:
        h, w, d_gates = torch.randn(batch, hidden), torch.randn(gate_rows, hidden), torch.randn(batch, gate_rows)
        w_t = w.t().contiguous()
        reorder = median_us(lambda: torch.ops.mkldnn._reorder_linear_weight(w, batch), max(10, args.repeats // 10))
        packed_fwd = torch.ops.mkldnn._reorder_linear_weight(w, batch)
        packed_bwd = torch.ops.mkldnn._reorder_linear_weight(w_t, batch)
        fwd_mm = median_us(lambda: torch.mm(h, w.t()), args.repeats)
        fwd_packed = median_us(lambda: torch.ops.mkldnn._linear_pointwise(h, packed_fwd, None, "none", [], ""), args.repeats)
        bwd_mm = median_us(lambda: torch.mm(d_gates, w_t.t()), args.repeats)
        bwd_packed = median_us(lambda: torch.ops.mkldnn._linear_pointwise(d_gates, packed_bwd, None, "none", [], ""),
                               args.repeats)
        rows.append(f"| {what} | {batch} x {hidden} -> {gate_rows} | {reorder:,.0f} | {fwd_mm:,.0f} | {fwd_packed:,.0f} "
                    f"| {fwd_mm / fwd_packed:.2f}x | {bwd_mm:,.0f} | {bwd_packed:,.0f} | {bwd_mm / bwd_packed:.2f}x |")
    print("# Per-step matmul: torch.mm vs oneDNN prepacked\n")
    print(header("cpu") + f"\n- median of {args.repeats} calls\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

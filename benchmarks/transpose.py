"""Transposing copies of the CPU backward: PyTorch's strided copy against the C kernels' blocked
transpose (``onlstm.ops.cpu.transposed``, one thread and torch's thread count).

The backward's oneDNN products need transposed operands as contiguous matrices: the gate
gradients of all steps (rows x T*B), W_hh^T for the prepacked per-step product, W_ih^T for the
input gradient and the layer inputs for the weight gradients. Interleaved medians of --repeats
copies, at the paper's and the small configuration's shapes.

    python benchmarks/transpose.py [--repeats 15]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import interleaved_medians, parse_repeats, print_title  # noqa: E402  (after the sys.path line)
from onlstm.ops import cpu_build  # noqa: E402

# (what, rows, cols): the matrix that is transposed
SHAPES = [
    ("paper: gate gradients, layers 1-2 (T*B x rows)", 1400, 4830),
    ("paper: W_hh / W_ih, layers 1-2 (rows x hidden)", 4830, 1150),
    ("paper: layer inputs (T*B x hidden)", 1400, 1150),
    ("paper: gate gradients, layer 3", 1400, 1680),
    ("small: gate gradients (T*B x rows)", 1120, 1088),
]


def c_transpose(x: torch.Tensor, out: torch.Tensor, threads: int) -> None:
    cpu_build.require().onlstm_transpose(x.size(0), x.size(1), x.data_ptr(), out.data_ptr(), threads)


def main() -> None:
    repeats = parse_repeats(__doc__, default=15)
    threads = torch.get_num_threads()
    print_title("Transposing copies: PyTorch vs the C kernels")
    print(f"Median ms of {repeats} interleaved copies into a fresh matrix (as the backward makes them).\n")
    print(
        f"| matrix | shape | torch `.t().contiguous()` | C, 1 thread | C, {threads} threads | speed-up ({threads} threads) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for what, rows, cols in SHAPES:
        x = torch.randn(rows, cols)
        paths = {
            "torch": lambda: x.t().contiguous(),
            "c1": lambda: c_transpose(x, torch.empty(cols, rows), 1),
            "cn": lambda: c_transpose(x, torch.empty(cols, rows), threads),
        }
        out = torch.empty(cols, rows)
        c_transpose(x, out, threads)
        assert torch.equal(out, x.t()), "the C transpose disagrees with torch"
        ms = {name: 1000 * t for name, t in interleaved_medians(paths, repeats).items()}
        print(
            f"| {what} | {rows} x {cols} | {ms['torch']:.2f} | {ms['c1']:.2f} | {ms['cn']:.2f} "
            f"| {ms['torch'] / ms['cn']:.2f}x |"
        )


if __name__ == "__main__":
    main()

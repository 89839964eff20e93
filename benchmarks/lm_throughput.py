"""Tokens/s of one language-model training step (forward, AR/TAR loss, backward, clip, SGD step).

ON-LSTM and LSTM at the paper's size and a small size, measured interleaved in one process so that
the ratios are fair; medians of --repeats timed steps after one warm-up step.

    python benchmarks/lm_throughput.py [--quick] [--device cpu|cuda] [--out benchmarks/results/lm_throughput_cpu_<commit>.md]

The ablation that decided which hand-tuned CPU pieces to delete (benchmarks/results/
lm_ablation_cpu.md) ran as ``--ablation`` of this script at commit 414ad4f, before the deletion.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header, interleaved_medians, synchronizer, timed  # noqa: E402  (after the sys.path line)
from onlstm import BackboneConfig, RNNLanguageModel  # noqa: E402

CONFIGS = {
    # name: (backbone, vocab, bptt, batch)
    "paper [400,1150,1150,400] c10": (
        BackboneConfig(emb_size=400, hidden_size=1150, n_layers=3, chunk_size=10),
        10000,
        70,
        20,
    ),
    "small [200,256,200] c8": (BackboneConfig(emb_size=200, hidden_size=256, n_layers=2, chunk_size=8), 10000, 35, 32),
}


def make_step(model: RNNLanguageModel, vocab: int, bptt: int, batch: int, device: str):
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    tokens = torch.randint(0, vocab, (bptt + 1, batch), device=device)

    def step() -> None:
        out = model(tokens[:-1])
        loss = F.cross_entropy(out.logits.reshape(-1, vocab), tokens[1:].reshape(-1))
        loss = (
            loss
            + 2.0 * out.outputs[-1].pow(2).mean()
            + (out.raw_outputs[-1][1:] - out.raw_outputs[-1][:-1]).pow(2).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    torch.manual_seed(0)

    # (label, arch, cuda_graphs); the graphed variant only where CUDA graphs exist
    variants = [("ON-LSTM", "onlstm", False), ("LSTM", "lstm", False)]
    if args.device == "cuda":
        variants.insert(1, ("ON-LSTM + cuda_graphs", "onlstm", True))
    table = [
        "| config | bptt | batch | model | tokens/s | vs LSTM | first step (s) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    sync = synchronizer(args.device)
    for name, (cfg, vocab, bptt, batch) in CONFIGS.items():
        steps, first = {}, {}
        for label, arch, graphs in variants:
            backbone = BackboneConfig(**{**cfg.__dict__, "arch": arch})
            model = RNNLanguageModel(vocab, backbone, cuda_graphs=graphs).to(args.device).train()
            steps[label] = make_step(model, vocab, bptt, batch, args.device)
            # the first call, reported separately (allocations, lazy init, graph capture)
            first[label] = timed(steps[label], sync)
        medians = interleaved_medians(steps, repeats, warmup=1, sync=sync)  # all variants see the same machine state
        tokens = bptt * batch
        for label in steps:
            table.append(
                f"| {name} | {bptt} | {batch} | {label} | {tokens / medians[label]:,.0f} "
                f"| {medians['LSTM'] / medians[label]:.2f}x | {first[label]:.2f} |"
            )

    text = (
        f"## LM training step throughput ({args.device})\n\n{header(args.device)}\n- median of {repeats} steps\n\n"
        + "\n".join(table)
        + "\n"
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

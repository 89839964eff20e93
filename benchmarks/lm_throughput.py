"""Tokens/s of one language-model training step (forward, AR/TAR loss, backward, clip, SGD step).

ON-LSTM and LSTM at the paper's size and a small size, measured interleaved in one process so that
the ratios are fair; medians of --repeats timed steps after --warmup steps.

    python benchmarks/lm_throughput.py [--quick] [--device cpu|cuda] [--out benchmarks/results/lm_throughput_cpu.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header
from onlstm import BackboneConfig, RNNLanguageModel

CONFIGS = {
    # name: (backbone, vocab, bptt, batch)
    "paper [400,1150,1150,400] c10": (BackboneConfig(emb_size=400, hidden_size=1150, n_layers=3, chunk_size=10), 10000, 70, 20),
    "small [200,256,200] c8": (BackboneConfig(emb_size=200, hidden_size=256, n_layers=2, chunk_size=8), 10000, 35, 32),
}


def make_step(model: RNNLanguageModel, vocab: int, bptt: int, batch: int, device: str):
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    tokens = torch.randint(0, vocab, (bptt + 1, batch), device=device)

    def step() -> None:
        out = model(tokens[:-1])
        loss = F.cross_entropy(out.logits.reshape(-1, vocab), tokens[1:].reshape(-1))
        loss = loss + 2.0 * out.outputs[-1].pow(2).mean() + (out.raw_outputs[-1][1:] - out.raw_outputs[-1][:-1]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

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

    rows = []
    for name, (cfg, vocab, bptt, batch) in CONFIGS.items():
        steps = {}
        for arch in ("onlstm", "lstm"):
            model = RNNLanguageModel(vocab, BackboneConfig(**{**cfg.__dict__, "arch": arch})).to(args.device).train()
            steps[arch] = make_step(model, vocab, bptt, batch, args.device)
            start = time.perf_counter()
            steps[arch]()  # first call, reported separately (allocations, lazy init)
            first = time.perf_counter() - start
            steps[arch + "_first"] = first
            steps[arch]()
        times = {"onlstm": [], "lstm": []}
        for _ in range(repeats):  # interleaved: both see the same machine state
            for arch in ("onlstm", "lstm"):
                start = time.perf_counter()
                steps[arch]()
                times[arch].append(time.perf_counter() - start)
        tokens = bptt * batch
        on, ls = statistics.median(times["onlstm"]), statistics.median(times["lstm"])
        rows.append((name, bptt, batch, tokens / on, tokens / ls, ls / on, steps["onlstm_first"]))

    table = [
        "| config | bptt | batch | ON-LSTM tokens/s | LSTM tokens/s | ON-LSTM / LSTM | ON-LSTM first step (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [f"| {n} | {b} | {bs} | {a:,.0f} | {l:,.0f} | {r:.2f}x | {f:.2f} |" for n, b, bs, a, l, r, f in rows]
    text = f"## LM training step throughput ({args.device})\n\n{header(args.device)}\n- median of {repeats} steps\n\n" + "\n".join(table) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

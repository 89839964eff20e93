"""Speed of the ON-LSTM recurrence: the per-step reference, the fused layer and nn.LSTM.

Table 1: training tokens/s (forward + backward of the stack, median of N repeats after a warm-up;
the first call, on a fresh model, is timed separately) at the paper's size and a small size.
All paths are measured interleaved (repeat r runs every path once), so noise from other
processes on the machine hits them alike and the ratios stay fair; each configuration runs in a
process of its own. On a CPU the paths are the
reference, the fused layer with the compiled C step kernels
(built into a fresh cache folder, so its first call includes the compile) and nn.LSTM; on CUDA also the Triton kernels, the Triton kernels
replayed as a CUDA graph (``torch.cuda.make_graphed_callables``), and nn.LSTM is cuDNN.

Table 2: batched inference: master-gate distances of the whole NLTK treebank sample through
``onlstm.parsing.inference.sequence_gate_distances`` at the paper's size, padded batches vs a batch-1 loop.

    python benchmarks/recurrence.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing the package

from benchmarks.machine import header, interleaved_medians, synchronizer, timed  # noqa: E402  (after the sys.path line)
from onlstm import BackboneConfig, ONLSTMStack, RNNLanguageModel  # noqa: E402
from onlstm.stack import GraphedStack  # noqa: E402
from onlstm.parsing.inference import sequence_gate_distances  # noqa: E402

# (name, layer sizes, chunk size, bptt, batch)
CONFIGS = [
    ("paper", [400, 1150, 1150, 400], 10, 70, 20),
    ("small", [200, 256, 256], 8, 35, 32),
]
# the paper's regularisation (dropouth, wdrop) is on for the ON-LSTM paths: it is what training pays
DROPOUT, DROPCONNECT = 0.3, 0.45


class StackedLSTM(nn.Module):
    """nn.LSTM baseline: one single-layer nn.LSTM per layer (the sizes differ between layers)."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(nn.LSTM(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)[0]
        return x


class GraphedOutput(nn.Module):
    """The stack through ``onlstm.stack.GraphedStack`` (what ``run.cuda_graphs=true`` runs),
    returning the output tensor; a module so that ``train_step`` finds the parameters."""

    def __init__(self, stack: ONLSTMStack):
        super().__init__()
        self.stack = stack
        self.graphed = GraphedStack(stack)

    def forward(self, x):
        return self.graphed(x).output


GRAPHED = "fused_triton + CUDA graph"
# the fused CPU path without dropout and DropConnect: the same work as the nn.LSTM row
UNREGULARISED = "fused_cpu, no dropout/DropConnect"


def make_model(path: str, sizes: list[int], chunk: int, x: torch.Tensor) -> nn.Module:
    if path == "nn.LSTM":
        return StackedLSTM(sizes).to(x.device).train()
    implementation = {GRAPHED: "fused_triton", UNREGULARISED: "fused_cpu"}.get(path, path)
    regularised = path != UNREGULARISED
    model = ONLSTMStack(
        sizes,
        chunk,
        dropout=DROPOUT if regularised else 0.0,
        dropconnect=DROPCONNECT if regularised else 0.0,
        implementation=implementation,
    )
    model = model.to(x.device).train()
    return GraphedOutput(model) if path == GRAPHED else model  # captured at the first call


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    out = model(x)
    out = out if isinstance(out, torch.Tensor) else out.output
    out.pow(2).mean().backward()
    for p in model.parameters():
        p.grad = None


def training_paths(device: str) -> list[str]:
    if device == "cuda":
        return ["reference", "fused_triton", GRAPHED, "nn.LSTM"]
    return ["reference", "fused_cpu", UNREGULARISED, "nn.LSTM"]  # "fused" picks fused_cpu on a CPU


def training_table(args: argparse.Namespace) -> str:
    """Each configuration in a process of its own (this script with --config): what one size
    leaves behind in a process (the allocator's heap, oneDNN's primitive cache) changed the next
    size's timings by up to 20% (docs/performance.md), and a training run holds one size only."""
    rows = [
        "| config | layer sizes, chunk, bptt x batch | path | first call (s) | median step (ms) "
        "| tokens/s | vs nn.LSTM | vs reference |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, *_ in CONFIGS:
        command = [sys.executable, __file__, "--config", name, "--device", args.device]
        command += ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the {name} configuration failed:\n{done.stderr}")
        rows += done.stdout.splitlines()
        print(f"  {name}: done", file=sys.stderr)
    return "\n".join(rows)


def config_rows(args: argparse.Namespace) -> list[str]:
    """The table rows of one configuration, its paths timed interleaved in this process."""
    paths = training_paths(args.device)
    rows = []
    for name, sizes, chunk, bptt, batch in [c for c in CONFIGS if c[0] == args.config]:
        torch.manual_seed(0)
        x = torch.randn(bptt, batch, sizes[0], device=args.device)
        models, first, failed = {}, {}, {}
        for path in paths:
            # first call: building the model (for the graphed path: capturing it) and one step,
            # nothing warmed up for this shape yet (Triton compiles its kernels here)
            def first_call(path=path):
                models[path] = make_model(path, sizes, chunk, x)
                train_step(models[path], x)

            try:
                first[path] = timed(first_call, synchronizer(args.device))
            except Exception as error:  # a path that cannot run here is reported, not fatal
                failed[path] = f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"
                models.pop(path, None)
        steps = {path: (lambda model=model: train_step(model, x)) for path, model in models.items()}
        medians = interleaved_medians(steps, args.repeats, args.warmup, synchronizer(args.device))
        tokens = bptt * batch
        for path in paths:
            if path in failed:
                rows.append(
                    f"| {name} | {sizes}, {chunk}, {bptt} x {batch} | {path} | failed: {failed[path]} | | | | |"
                )
                continue
            rows.append(
                f"| {name} | {sizes}, {chunk}, {bptt} x {batch} | {path} | {first[path]:.2f} "
                f"| {1000 * medians[path]:.1f} | {tokens / medians[path]:,.0f} "
                f"| {medians['nn.LSTM'] / medians[path]:.2f}x | {medians['reference'] / medians[path]:.2f}x |"
            )
    return rows


def treebank_sentences(data_dir: Path) -> list[list[str]]:
    import nltk
    from nltk.corpus.reader import BracketParseCorpusReader

    root = data_dir / "treebank" / "combined"
    if str(data_dir) not in nltk.data.path:
        nltk.data.path.append(str(data_dir))  # nltk >= 3.9 refuses readers outside its data path
    reader = BracketParseCorpusReader(str(root), r"wsj_.*\.mrg")
    return [[w.lower() for w in sent] for sent in reader.sents()]


def inference_table(args: argparse.Namespace) -> str:
    sentences = treebank_sentences(args.data_dir)
    if args.quick:
        sentences = sentences[: len(sentences) // 8]
    vocab: dict[str, int] = {}
    rng = random.Random(0)
    ids = [[vocab.setdefault(w, rng.randrange(args.vocab)) for w in s] for s in sentences]
    n_tokens = sum(len(s) for s in ids)
    torch.manual_seed(0)
    model = RNNLanguageModel(args.vocab, BackboneConfig()).to(args.device)  # paper size, fused stack
    sequence_gate_distances(model, ids[:8], batch_size=8)  # warm-up

    batched = timed(lambda: sequence_gate_distances(model, ids, batch_size=args.batch_size), synchronizer(args.device))
    subset = random.Random(1).sample(ids, min(args.batch1_sentences, len(ids)))
    sub_tokens = sum(len(s) for s in subset)
    sub_time = timed(lambda: sequence_gate_distances(model, subset, batch_size=1), synchronizer(args.device))
    single = sub_time * n_tokens / sub_tokens  # extrapolated per token: cost ~ tokens at batch 1
    rows = [
        f"{len(ids):,} sentences, {n_tokens:,} tokens, paper-size ON-LSTM LM "
        f"(vocab {args.vocab:,}, fused stack), eval mode.",
        f"The batch-1 loop was timed on {len(subset)} random sentences ({sub_tokens:,} tokens, "
        f"{sub_time:.1f} s) and extrapolated to all tokens.",
        "",
        "| path | time (s) | tokens/s | speed-up |",
        "|---|---:|---:|---:|",
        f"| batch 1 (extrapolated) | {single:.1f} | {n_tokens / single:,.0f} | 1.0x |",
        f"| padded batches of {args.batch_size}, sorted by length | {batched:.1f} | {n_tokens / batched:,.0f} "
        f"| {single / batched:.1f}x |",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and 1/8 of the treebank")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per path (default 5, quick 3)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256, help="inference batch size")
    parser.add_argument("--batch1-sentences", type=int, default=None, help="batch-1 subset (default 100, quick 30)")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--config", choices=[c[0] for c in CONFIGS], help=argparse.SUPPRESS)  # one config's rows
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("ONLSTM_DATA_DIR", REPO.parent / "shared" / "data")),
        help="data root holding treebank/combined/wsj_*.mrg (default: $ONLSTM_DATA_DIR or ../shared/data)",
    )
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.batch1_sentences is None:
        args.batch1_sentences = 30 if args.quick else 100
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")

    if args.config:  # a child process of training_table
        print("\n".join(config_rows(args)))
        return
    if args.device == "cpu":  # a fresh kernel cache: fused_cpu's first call includes compiling it
        os.environ["ONLSTM_KERNEL_CACHE"] = tempfile.mkdtemp(prefix="onlstm-kernels-")
    print("# ON-LSTM recurrence benchmark\n")
    print(header(args.device) + "\n")
    print(
        f"## Training (forward + backward), median of {args.repeats} interleaved repeats after {args.warmup} warm-up\n"
    )
    print(
        f"ON-LSTM paths train with dropout {DROPOUT} between layers and DropConnect {DROPCONNECT} "
        f"(the paper's), except `{UNREGULARISED}`; nn.LSTM is stacked single-layer `nn.LSTM` "
        "modules, no regularisation.\n"
    )
    print(training_table(args) + "\n", flush=True)
    if not args.skip_inference:
        print("## Batched inference: `sequence_gate_distances` over the treebank sample\n")
        print(inference_table(args))


if __name__ == "__main__":
    main()

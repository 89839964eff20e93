"""What one epoch of the paper's logic setup (``experiment=logic_paper``) costs on this machine.

Times training steps (forward, loss, backward, Adam step) over the first ``--batches`` batches of a
training epoch (the bucket sampler's order is shuffled, so they are a sample of all lengths) and
forward passes over every validation batch, one thread, in process CPU seconds, for ON-LSTM and
LSTM; an epoch's cost is the mean per batch times the number of batches. The evidence report quotes
the table beside the CPU-sized recipe (docs/preregistration.md, question 1).

    python benchmarks/logic_paper_epoch.py [--batches 40] > benchmarks/results/logic_paper_epoch_cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import print_title  # noqa: E402  (after the sys.path line)


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def measure(arch: str, batches: int) -> dict[str, float]:
    from hydra.utils import instantiate

    from tasks.jobs.task_from_config import build_module
    from tests.helpers import compose_config

    with tempfile.TemporaryDirectory() as out:
        cfg = compose_config(["experiment=logic_paper", f"model={arch}", "~logger"], Path(out))
    datamodule = instantiate(cfg.task.datamodule)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    optimizer = torch.optim.Adam(module.parameters(), lr=module.hparams.lr)
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()

    def train_step(batch) -> None:
        optimizer.zero_grad()
        F.cross_entropy(module(batch), batch["label"]).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()

    module.train()
    sample = [b for _, b in zip(range(batches + 2), train_loader)]
    train_times = [cpu_seconds(lambda b=b: train_step(b)) for b in sample][2:]  # two warm-up steps
    module.eval()
    with torch.no_grad():
        # every validation batch: they are sorted by length, so the first ones would be the short ones
        val_times = [cpu_seconds(lambda b=b: module(b)) for b in val_loader]
    per_train, per_val = statistics.fmean(train_times), statistics.fmean(val_times)
    epoch = per_train * len(train_loader) + per_val * len(val_loader)
    return {"parameters": sum(p.numel() for p in module.parameters()), "train_batches": len(train_loader),
            "val_batches": len(val_loader), "per_train": per_train, "per_val": per_val, "epoch": epoch,
            "batch_size": cfg.task.datamodule.batch_size, "epochs": cfg.trainer.max_epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="training batches timed per model")
    batches = parser.parse_args().batches
    torch.set_num_threads(1)
    print_title("One epoch of experiment=logic_paper, one thread (CPU seconds)")
    rows = {arch: measure(arch, batches) for arch in ("onlstm", "lstm")}
    print(f"Mean CPU seconds per batch over {batches} training batches and every validation batch "
          "(after two untimed training steps); an epoch is that times the batches of each split.\n")
    print("| model | parameters | batch | training batches | s per training step | validation batches "
          "| s per validation batch | CPU minutes per epoch | CPU hours for the paper's epochs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for arch, r in rows.items():
        print(f"| {arch} | {r['parameters']:,} | {r['batch_size']} | {r['train_batches']} | {r['per_train']:.3f} | "
              f"{r['val_batches']} | {r['per_val']:.3f} | {r['epoch'] / 60:.1f} | "
              f"{r['epoch'] * r['epochs'] / 3600:.1f} ({r['epochs']} epochs) |")


if __name__ == "__main__":
    main()

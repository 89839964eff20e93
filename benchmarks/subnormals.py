"""Training steps of a trained logic checkpoint with subnormal floats allowed and flushed.

A trained model makes tiny gradients and saturated gates whose products fall below FLT_MIN;
on x86 CPUs arithmetic on such subnormal floats takes a slow path. The ON-LSTM's CPU layer ops
flush them while they run (``onlstm.ops.cpu.subnormals_flushed``). This times six training steps
(forward, loss, backward) of the checkpoint's model, and of the same model at its initial weights,
with torch's own flush mode off and on (``torch.set_flush_denormal``), interleaved: with the ops'
flush in place the trained model's "off" time should match its "on" time and the untrained one.

    python benchmarks/subnormals.py logs/evidence/logic/onlstm_seed1/checkpoints/last.ckpt [--repeats 3]

The checkpoint is a task=logic run of ``experiment=evidence_logic model=onlstm`` (its sizes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import interleaved_medians, print_title  # noqa: E402  (after the sys.path line)


def main() -> None:
    from hydra.utils import instantiate

    from tasks.jobs.task_from_config import build_module
    from tests.helpers import compose_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a task=logic checkpoint of experiment=evidence_logic model=onlstm")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    checkpoint, repeats = args.checkpoint, args.repeats
    torch.set_num_threads(1)
    cfg = compose_config(["experiment=evidence_logic", "model=onlstm", "~logger"], Path("/tmp/onlstm_subnormals"))
    datamodule = instantiate(cfg.task.datamodule)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule).train()
    weights = {"trained": torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"],
               "initial": {k: v.clone() for k, v in module.state_dict().items()}}
    batches = [batch for _, batch in zip(range(6), datamodule.train_dataloader())]

    def steps(name: str, flush: bool):
        def run() -> None:
            module.load_state_dict(weights[name])
            torch.set_flush_denormal(flush)
            torch.manual_seed(0)
            for batch in batches:
                F.cross_entropy(module(batch), batch["label"]).backward()
                module.zero_grad()
            torch.set_flush_denormal(False)

        return run

    print_title("Subnormal floats: six logic training steps")
    paths = {(name, flush): steps(name, flush) for name in weights for flush in (False, True)}
    medians = interleaved_medians({f"{n}, torch flush {'on' if f else 'off'}": p for (n, f), p in paths.items()}, repeats)
    print(f"Median of {repeats} interleaved repeats, one thread; checkpoint `{checkpoint}`.\n")
    print("| weights | torch.set_flush_denormal | six steps (s) |")
    print("|---|---|---:|")
    for label, median in medians.items():
        name, flush = label.split(", torch flush ")
        print(f"| {name} | {flush} | {median:.3f} |")


if __name__ == "__main__":
    main()

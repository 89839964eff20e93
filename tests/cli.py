"""Run ``python train.py ...`` as a user would (a subprocess), and read what a run folder holds."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import DATA_DIR, ROOT

# an LM run of a few seconds: the tiny backbone on a 1% prefix of PTB's training stream
LM_TINY_RUN = [
    "model.emb_size=16",
    "model.hidden_size=32",
    "model.n_layers=2",
    "model.chunk_size=4",
    "task.datamodule.train_fraction=0.01",
    "task.datamodule.batch_size=4",
    "task.datamodule.eval_batch_size=5",
    "task.datamodule.bptt=20",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]


# a logic run of a few seconds: 1-layer tiny encoder, formulas with 0-1 operators, small subsamples
LOGIC_TINY_RUN = [
    "task=logic",
    "model.emb_size=16",
    "model.hidden_size=32",
    "model.n_layers=1",
    "model.chunk_size=4",
    "model.tie_weights=false",
    "task.datamodule.train_ops=[0,1]",
    "task.datamodule.test_ops=[0,1]",
    "task.datamodule.train_fraction=0.02",
    "task.datamodule.val_fraction=0.1",
    "task.datamodule.test_fraction=0.02",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(ONLSTM_DATA_DIR=str(DATA_DIR), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", WANDB_MODE="offline")
    return env


def run_train(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """``python train.py <args>`` from the project root; fails the test with the output's tail."""
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"train.py {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def logged_metrics(run_dir: Path) -> dict[str, float]:
    """The last value of every metric in a run's CSV log (``<run>/csv/metrics.csv``)."""
    values: dict[str, float] = {}
    with open(Path(run_dir) / "csv" / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            values.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return values

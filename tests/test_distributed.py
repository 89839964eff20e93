"""DDP over two CPU processes (gloo), through the real CLI: ``python train.py trainer=ddp_cpu ...``.

strategy=ddp relaunches train.py for rank 1 with the same overrides and the same run folder, the
path users take on GPUs. Each test compares the distributed run's logged metrics with a
single-process evaluation of the checkpoint it wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from tasks.jobs.task_from_config import build_module
from tests.helpers import LM_TINY_RUN, logged_metrics, requires_data, run_train, tiny_model_overrides

# two layers (unlike tests/helpers.py's LOGIC_DDP_RUN), 0-2 operators, test lengths 0, 1, 12
LOGIC_DDP_RUN = [
    "task=logic",
    *tiny_model_overrides(tie_weights="false"),
    "task.datamodule.train_ops=[0,1,2]",
    "task.datamodule.test_ops=[0,1,12]",
    "task.datamodule.train_fraction=0.05",
    "task.datamodule.val_fraction=0.2",
    "task.datamodule.test_fraction=0.05",
    "task.datamodule.batch_size=32",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=4",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]


def one_process_trainer(root: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root, **kwargs)


def only_checkpoint(run_dir: Path, pattern: str = "epoch_*.ckpt") -> Path:
    found = sorted((run_dir / "checkpoints").glob(pattern))
    assert len(found) == 1, found
    return found[0]


@requires_data("ptb/train.txt", "ptb/valid.txt", "ptb/test.txt")
def test_ddp_lm_validation_perplexity_equals_one_process_with_twice_the_batch(tmp_path, make_cfg):
    run_dir = tmp_path / "ddp"
    run_train(["trainer=ddp_cpu", *LM_TINY_RUN, "+trainer.limit_train_batches=5", "+trainer.limit_val_batches=4",
               "test=false", f"hydra.run.dir={run_dir}"])
    ddp_ppl = logged_metrics(run_dir)["val/ppl"]
    ckpt = only_checkpoint(run_dir)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 5  # each rank took its 5 segments, in step
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran, in the same run folder
    assert not (run_dir / "csv" / "version_1").exists()

    def one_process_ppl(eval_batch_size: int) -> float:
        cfg = make_cfg([*LM_TINY_RUN, f"task.datamodule.eval_batch_size={eval_batch_size}"],
                       subdir=f"single{eval_batch_size}")
        datamodule = instantiate(cfg.task.datamodule, _convert_="all")
        module = build_module(cfg, datamodule)
        [result] = one_process_trainer(tmp_path, limit_val_batches=4).validate(
            module, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=True
        )
        return result["val/ppl"]

    # rank r evaluated columns [5r, 5r+5) of the stream cut into 10 columns: together, exactly
    # the columns (and tokens) of one process with eval_batch_size=10
    assert ddp_ppl == pytest.approx(one_process_ppl(10), rel=1e-5)
    # and not what one rank alone would see (both ranks evaluating the same 5 columns)
    assert ddp_ppl != pytest.approx(one_process_ppl(5), rel=1e-3)


@requires_data("logic/train0", "logic/test12")
def test_ddp_logic_run_tests_on_one_device_with_the_single_process_numbers(tmp_path, make_cfg):
    run_dir = tmp_path / "ddp"
    run_train(["trainer=ddp_cpu", *LOGIC_DDP_RUN, f"hydra.run.dir={run_dir}"])
    logged = logged_metrics(run_dir)
    assert "testing on one device, on rank zero only" in (run_dir / "train.log").read_text()
    ckpt = only_checkpoint(run_dir)
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 4

    cfg = make_cfg(LOGIC_DDP_RUN, subdir="single")
    datamodule = instantiate(cfg.task.datamodule, _convert_="all")
    module = build_module(cfg, datamodule)
    [single] = one_process_trainer(tmp_path / "single").test(
        module, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=True
    )
    for key in ("test/acc", "test/acc_ops0", "test/acc_ops1", "test/acc_ops12"):
        assert logged[key] == pytest.approx(single[key], abs=1e-7), key
    # the table counts every test example once (a DDP test would have counted each twice)
    rows = (run_dir / "tables" / "test_acc_by_ops.csv").read_text().splitlines()[1:]
    assert sum(int(row.split(",")[1]) for row in rows) == len(datamodule.test_set)

"""The trainer's stopping limits are set on the command line without Hydra's `+` prefix."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.helpers import LM_TINY_RUN, ROOT, requires_data, run_train

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (ROOT / "conf" / "trainer").glob("*.yaml"))


@pytest.mark.parametrize("trainer", TRAINERS)
def test_stopping_limits_default_to_lightnings_own(make_cfg, trainer):
    """Writing the keys into conf/trainer must not change what a run does when they are not set."""
    cfg = make_cfg([f"trainer={trainer}"])
    defaults = inspect.signature(pl.Trainer).parameters
    for key in ("max_steps", "max_time"):
        assert cfg.trainer[key] == defaults[key].default, f"conf/trainer/{trainer}.yaml: {key}"


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_max_steps_and_max_time_need_no_plus(make_cfg, experiment):
    chosen = [f"experiment={experiment}"] if experiment else []
    cfg = make_cfg([*chosen, "trainer.max_steps=30", "trainer.max_time=00:00:01:00"])
    assert cfg.trainer.max_steps == 30
    assert cfg.trainer.max_time == "00:00:01:00"


def test_experiments_keep_their_own_budgets(make_cfg):
    """An experiment's `trainer.max_steps` / `trainer.max_time` still win over the trainer group's."""
    assert make_cfg(["experiment=ptb_cpu"]).trainer.max_steps == 1800
    assert make_cfg(["experiment=syneval_cpu"]).trainer.max_time == "00:00:22:00"


@requires_data("ptb")
def test_train_py_max_steps_without_plus_stops_the_run(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_train([*LM_TINY_RUN, "trainer.max_steps=3", "test=false", f"hydra.run.dir={run}"])
    assert "max_steps=3" in proc.stdout + proc.stderr
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 3

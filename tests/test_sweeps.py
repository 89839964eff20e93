"""Multiruns through Hydra's real launchers and the Optuna sweeper (``python train.py -m ...``).

Every job must get its own folder, logger run and checkpoints; the Optuna sweeper must receive
the value that train.py's ``main`` returns (the task's ``optimized_metric``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from tasks.jobs import run_folder
from tests.helpers import LM_TINY_RUN, LOGIC_TINY_RUN, logged_metrics, requires_data, run_train

LM_JOB = [*LM_TINY_RUN, "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2"]
LOGIC_JOB = [*LOGIC_TINY_RUN, "task.datamodule.batch_size=32"]


def job_folders(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def job_config(job: Path) -> dict:
    return yaml.safe_load((job / ".hydra" / "config.yaml").read_text())


# ------------------------------------------------------------------ compose only (fast)
def test_launcher_and_search_configs_compose(make_cfg):
    slurm = make_cfg(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp"])
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher")
    assert slurm.hydra.launcher.partition == "gpu" and slurm.hydra.launcher.gpus_per_node == 1
    assert slurm.trainer.strategy == "ddp" and slurm.trainer.use_distributed_sampler is False
    joblib = make_cfg(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], subdir="joblib")
    assert joblib.hydra.launcher._target_.endswith("JoblibLauncher") and joblib.hydra.launcher.n_jobs == 2

    lm = make_cfg(["hparams_search=lm_optuna"], subdir="lm")
    assert lm.hydra.sweeper._target_.endswith("OptunaSweeper") and str(lm.hydra.mode) == "RunMode.MULTIRUN"
    assert lm.hydra.sweeper.direction == "minimize" and lm.task.optimized_metric == "val/ppl_best"
    assert lm.callbacks.model_checkpoint.monitor == "val/ppl_best" and lm.task.monitor_mode == "min"
    logic = make_cfg(["hparams_search=logic_optuna"], subdir="logic")
    assert logic.task.name == "logic" and logic.hydra.sweeper.direction == "maximize"
    assert logic.task.optimized_metric == "val/acc_best" and logic.task.monitor_mode == "max"
    for cfg in (lm, logic):  # every searched key exists in the composed config
        for key in cfg.hydra.sweeper.params:
            node, *path = key.split(".")
            value = cfg[node]
            for part in path:
                assert part in value, key
                value = value[part]


# ------------------------------------------------------------------ real multiruns (subprocesses)
@requires_data("ptb/train.txt", "ptb/valid.txt", "ptb/test.txt")
def test_submitit_local_multirun_gives_each_job_a_complete_folder(tmp_path):
    sweep = tmp_path / "sweep"
    run_train(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *LM_JOB,
               "model.chunk_size=4,8", f"hydra.sweep.dir={sweep}"])
    jobs = job_folders(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    for job, chunk in zip(jobs, (4, 8)):
        assert job_config(job)["model"]["chunk_size"] == chunk
        metrics = logged_metrics(job)
        [ckpt] = list((job / "checkpoints").glob("epoch_*.ckpt"))
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert state["hyper_parameters"]["model"]["chunk_size"] == chunk  # its own weights, not the other job's
        # the job's logged validation perplexity is the score its own best checkpoint was kept for
        [score] = [v["best_model_score"] for k, v in state["callbacks"].items()
                   if k.startswith("ModelCheckpoint") and v.get("best_model_score") is not None]
        assert float(score) == pytest.approx(metrics["val/ppl"], rel=1e-6)
        assert (job / "train.log").is_file()
    assert len(list((sweep / ".submitit").iterdir())) >= 2  # submitit's own job folders
    assert logged_metrics(jobs[0])["val/ppl"] != logged_metrics(jobs[1])["val/ppl"]


# a logic job that learns formulas of 0-1 operators in a few seconds (tests/test_logic_task.py)
LOGIC_LEARNING_JOB = [
    "task=logic", "model.emb_size=32", "model.hidden_size=64", "model.n_layers=1", "model.chunk_size=8",
    "model.tie_weights=false", "model.dropouth=0", "model.dropouti=0", "model.dropoute=0", "model.wdrop=0",
    "task.module.mlp_hidden=64", "task.datamodule.train_ops=[0,1]", "task.datamodule.test_ops=[0,1]",
    "task.datamodule.batch_size=32", "trainer.max_epochs=3", "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]


@requires_data("logic/train0", "logic/train1", "logic/test0", "logic/test1")
def test_optuna_sweep_of_two_trials_receives_what_main_returns(tmp_path):
    """Guards that the Optuna sweeper optimises what train.py's main returns (val/acc_best): of two
    trials, one with learning rate 0 (it cannot learn: the majority rate) and one with 3e-3 (it
    learns: tests/test_logic_task.py), the sweeper must report the second as best, with its value."""
    sweep = tmp_path / "optuna"
    # the other searched settings pinned to one value each, so that the trials differ in lr alone
    space = ('hydra.sweeper.params={task.module.lr:"choice(0.0,0.003)",task.module.mlp_dropout:"choice(0.0)",'
             'model.dropout:"choice(0.0)",model.chunk_size:"choice(8)"}')
    run_train(["hparams_search=logic_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
               "hydra.sweeper.sampler.seed=0", space, *LOGIC_LEARNING_JOB, f"hydra.sweep.dir={sweep}"])
    jobs = job_folders(sweep)
    assert len(jobs) == 2
    lrs = [job_config(job)["task"]["module"]["lr"] for job in jobs]
    assert sorted(lrs) == [0.0, 0.003]  # the seeded sampler drew both values (else: pick another seed)
    values = [logged_metrics(job)["val/acc_best"] for job in jobs]
    learned, frozen = values[lrs.index(0.003)], values[lrs.index(0.0)]
    assert learned > frozen + 0.1
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_params"]["task.module.lr"] == 0.003
    assert results["best_value"] == pytest.approx(learned)
    params = [yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) for job in jobs]
    assert all(any(o.startswith("task.module.lr=") for o in p) for p in params)
    # the sweep's summary table names Optuna's best trial too
    assert f"Optuna's best trial (optimization_results.yaml): value {results['best_value']:.6g}" in (
        sweep / "summary.md").read_text()


@requires_data("ptb/train.txt", "ptb/valid.txt", "ptb/test.txt")
def test_two_job_sweep_writes_its_summary_table_and_tensorboard_hparams_with_final_metrics(tmp_path):
    """Guards what a researcher reads after ``train.py -m``: summary.csv / summary.md in the sweep
    folder, one row per job with its swept override, optimised metric, test metrics, wall time
    and folder, taken from each job's done.json; and each job's TensorBoard hparams carrying the
    final metrics (what the HParams tab compares). Went red with the callback left out of
    conf/hydra/default.yaml (no summary.csv), and with the final log_hyperparams call removed (no
    hparams session in the event files)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep = tmp_path / "sweep"
    run_train(["-m", "logger=tensorboard", *LM_JOB, "model.chunk_size=4,8", f"hydra.sweep.dir={sweep}"])
    with open(sweep / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["job"], r["swept"], r["status"], r["folder"]) for r in rows] == [
        ("0", "model.chunk_size=4", "finished", "0"), ("1", "model.chunk_size=8", "finished", "1")]
    for row in rows:
        done = json.loads((sweep / row["folder"] / "done.json").read_text())
        assert row["optimized_metric"] == "val/ppl"
        assert float(row["value"]) == pytest.approx(done["metrics"]["val/ppl"])
        assert float(row["test/ppl"]) == pytest.approx(done["metrics"]["test/ppl"])
        assert float(row["wall_s"]) == done["wall_seconds_last_attempt"] > 0
    assert sorted(r["best"] for r in rows) == ["", "yes"]
    # a job's overrides (what the evidence report compares with its plan) are the command line's
    # config overrides; Hydra's own settings (here hydra.sweep.dir) are not among them
    for row in rows:
        overrides = run_folder.read_overrides(sweep / row["folder"])
        assert row["swept"] in overrides and not any(o.startswith("hydra.") for o in overrides)
    best = next(r for r in rows if r["best"])
    assert float(best["value"]) == min(float(r["value"]) for r in rows)
    markdown = (sweep / "summary.md").read_text()
    assert "| job | swept | status | optimized_metric | value | best | test/loss | test/ppl |" in markdown
    assert "| 1 | model.chunk_size=8 | finished | val/ppl |" in markdown

    events = EventAccumulator(str(sweep / "0" / "tensorboard"))
    events.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content).session_start_info
    assert start.hparams["model/chunk_size"].number_value == 4
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/experiment").plugin_data.content).experiment
    assert {"val/ppl", "test/ppl"} <= {m.name.tag for m in experiment.metric_infos}
    done = json.loads((sweep / "0" / "done.json").read_text())
    assert events.Scalars("test/ppl")[-1].value == pytest.approx(done["metrics"]["test/ppl"])

"""The runner around every train.py and eval.py job (:mod:`tasks.jobs.runner`): what a sweeper is
handed, which folders a job refuses, what ``resume=true`` skips or continues, what a finished job
records, and that a job's tracker run is closed. The work itself is a stand-in here; the real
jobs run in tests/test_resume.py, tests/test_eval.py and tests/test_reliability.py."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from tasks.jobs import run_folder, runner


def job_cfg(folder: Path, **keys) -> DictConfig:
    """A job's config as the runner reads it (struct, as Hydra composes it)."""
    cfg = OmegaConf.create({"paths": {"output_dir": str(folder)}, "train": True, "resume": False, "threads": None,
                            "requires_finished_runs": None, "ckpt_path": None, **keys})
    OmegaConf.set_struct(cfg, True)
    return cfg


class Work:
    """A stand-in for fit_and_test / evaluate_checkpoint: returns ``metrics``, remembers each call."""

    def __init__(self, metrics: dict[str, float]):
        self.metrics, self.calls = metrics, []

    def __call__(self, cfg):
        self.calls.append({"ckpt_path": cfg.get("ckpt_path"), "threads": torch.get_num_threads()})
        return dict(self.metrics)


@pytest.fixture
def commit(monkeypatch):
    monkeypatch.setattr(runner, "code_commit", lambda: "c0ffee123456")
    return "c0ffee123456"


# ----------------------------------------------------------------------------- what a sweeper gets
def test_optimized_value_is_the_tasks_optimized_metric_or_none():
    """What Optuna optimises (train.py's and eval.py's main return it): the task's
    optimized_metric among the metrics; None when the run did not log it or the task names none."""
    metrics = {"val/acc": 0.75, "test/acc": 0.5}
    assert runner.optimized_value(OmegaConf.create({"task": {"optimized_metric": "val/acc"}}), metrics) == 0.75
    assert runner.optimized_value(OmegaConf.create({"task": {"optimized_metric": "val/ppl"}}), metrics) is None
    assert runner.optimized_value(OmegaConf.create({"task": {"optimized_metric": None}}), metrics) is None
    assert runner.optimized_value(OmegaConf.create({"task": {}}), metrics) is None


# ----------------------------------------------------------------------------- a job and its folder
def test_a_finished_job_returns_its_metrics_and_records_them_with_the_commit(tmp_path, commit):
    work = Work({"val/ppl": 120.5, "test/ppl": 118.0})
    assert runner.as_job(job_cfg(tmp_path / "run"), work) == {"val/ppl": 120.5, "test/ppl": 118.0}
    assert len(work.calls) == 1
    record = json.loads((tmp_path / "run" / "done.json").read_text())
    assert record["metrics"] == {"test/ppl": 118.0, "val/ppl": 120.5} and record["commit"] == commit


@pytest.mark.parametrize("rank", [1, 3])
def test_only_rank_zero_marks_the_job_finished(tmp_path, commit, monkeypatch, rank):
    """Under DDP every rank runs the job; only rank zero, which holds the complete metrics, writes
    done.json (break: `!= 0` into `> 1`, or into `== 1`)."""
    monkeypatch.setattr(rank_zero_only, "rank", rank)
    assert runner.as_job(job_cfg(tmp_path / "run"), Work({"val/acc": 0.5})) == {"val/acc": 0.5}
    assert not (tmp_path / "run" / "done.json").exists()


def test_threads_sets_torchs_threads_for_the_job(tmp_path, commit):
    before = torch.get_num_threads()
    work = Work({"val/acc": 0.5})
    try:
        runner.as_job(job_cfg(tmp_path / "run", threads=3), work)
        assert work.calls[0]["threads"] == 3
    finally:
        torch.set_num_threads(before)


def test_resume_skips_a_finished_job_with_its_stored_metrics(tmp_path, commit):
    folder = tmp_path / "job"
    run_folder.write_done(folder, {"val/acc": 0.9}, "abc", {}, 0.0)
    (run_folder.checkpoints_dir(folder)).mkdir()
    run_folder.last_checkpoint_path(folder).write_bytes(b"")
    work = Work({"val/acc": 0.1})
    assert runner.as_job(job_cfg(folder, resume=True), work) == {"val/acc": 0.9}
    assert work.calls == []
    assert json.loads(run_folder.done_path(folder).read_text())["commit"] == "abc"  # the record is left alone


def test_resume_continues_an_interrupted_training_job_from_its_last_checkpoint(tmp_path, commit):
    folder = tmp_path / "job"
    run_folder.checkpoints_dir(folder).mkdir(parents=True)
    (run_folder.checkpoints_dir(folder) / "epoch_002.ckpt").write_bytes(b"")
    run_folder.last_checkpoint_path(folder).write_bytes(b"")
    work = Work({"val/acc": 0.5})
    runner.as_job(job_cfg(folder, resume=True), work)
    assert work.calls[0]["ckpt_path"] == str(folder / "checkpoints" / "last.ckpt")


def test_resume_into_a_folder_with_other_checkpoints_and_no_last_one_is_refused(tmp_path, commit):
    """resume=true continues from last.ckpt only; a folder that holds other checkpoints (and no
    done.json, no last.ckpt) belongs to another run (break: drop check_output_dir from
    continue_where_stopped's else branch)."""
    folder = tmp_path / "job"
    run_folder.checkpoints_dir(folder).mkdir(parents=True)
    (run_folder.checkpoints_dir(folder) / "epoch_002.ckpt").write_bytes(b"")
    work = Work({"val/acc": 0.5})
    with pytest.raises(FileExistsError, match=rf"{folder / 'checkpoints'} already holds checkpoints of another run"):
        runner.as_job(job_cfg(folder, resume=True), work)
    assert work.calls == []


def test_resuming_an_evaluation_never_points_it_at_a_last_checkpoint(tmp_path, commit):
    """An evaluation job (train unset, eval.py) tests the checkpoint it names even where its folder
    holds a last.ckpt (break: `and` into `or` in continue_where_stopped)."""
    folder = tmp_path / "job"
    run_folder.checkpoints_dir(folder).mkdir(parents=True)
    run_folder.last_checkpoint_path(folder).write_bytes(b"")
    cfg = job_cfg(folder, resume=True, train=None, ckpt_path="/runs/lm/checkpoints/best.ckpt")
    assert runner.continue_where_stopped(cfg) is None
    assert cfg.ckpt_path == "/runs/lm/checkpoints/best.ckpt"


def test_a_fresh_resumable_job_starts_with_its_own_checkpoint(tmp_path, commit):
    """resume=true in an empty folder: the job runs from scratch (ckpt_path as configured)."""
    work = Work({"val/acc": 0.5})
    runner.as_job(job_cfg(tmp_path / "job", resume=True), work)
    assert work.calls[0]["ckpt_path"] is None
    assert (tmp_path / "job" / "done.json").is_file()


def test_a_new_training_job_refuses_a_folder_holding_checkpoints_and_names_it(tmp_path, commit):
    folder = tmp_path / "run"
    run_folder.checkpoints_dir(folder).mkdir(parents=True)
    (run_folder.checkpoints_dir(folder) / "last.ckpt").write_bytes(b"")
    work = Work({"val/acc": 0.5})
    with pytest.raises(FileExistsError, match=rf"{folder / 'checkpoints'} already holds checkpoints of another run"):
        runner.as_job(job_cfg(folder), work)
    assert work.calls == []


def test_a_folder_with_an_empty_checkpoints_folder_or_a_job_that_does_not_train_is_accepted(tmp_path):
    """Only checkpoints a training job would overwrite or mix with refuse a folder (break: `and`
    into `or` in check_output_dir)."""
    empty = tmp_path / "empty"
    run_folder.checkpoints_dir(empty).mkdir(parents=True)
    runner.check_output_dir(job_cfg(empty))
    full = tmp_path / "full"
    run_folder.checkpoints_dir(full).mkdir(parents=True)
    run_folder.last_checkpoint_path(full).write_bytes(b"")
    runner.check_output_dir(job_cfg(full, train=False))  # train=false test=true: tests a checkpoint, writes none
    runner.check_output_dir(job_cfg(tmp_path / "missing"))


def test_a_job_whose_required_run_is_unfinished_does_not_start(tmp_path, commit):
    unfinished = tmp_path / "lm"
    unfinished.mkdir()
    finished = tmp_path / "other_lm"
    run_folder.write_done(finished, {"val/ppl": 80.0}, "abc", {}, 0.0)
    work = Work({"val/acc": 0.5})
    with pytest.raises(FileNotFoundError, match=rf"{unfinished} holds no finished run"):
        runner.as_job(job_cfg(tmp_path / "job", requires_finished_runs=[str(finished), str(unfinished)]), work)
    assert work.calls == []
    runner.as_job(job_cfg(tmp_path / "job2", requires_finished_runs=[str(finished)]), work)
    assert len(work.calls) == 1


# ----------------------------------------------------------------------------- the tracker
class FakeWandb:
    def __init__(self):
        self.run, self.finished = object(), 0

    def finish(self):
        self.finished += 1
        self.run = None


def test_a_jobs_wandb_run_is_finished_whether_it_succeeds_or_fails(monkeypatch, tmp_path, caplog):
    """The next job of a multirun starts its own wandb run; a failure is raised again, logged with
    the job's folder (break: drop the finally's wandb.finish, or the `raise`)."""
    wandb = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    cfg = job_cfg(tmp_path / "run")
    with runner.closing_the_tracker(cfg, "run"):
        pass
    assert wandb.finished == 1

    wandb.run = object()
    with caplog.at_level(logging.ERROR, logger="onlstm.train"), pytest.raises(RuntimeError, match="diverged"):
        with runner.closing_the_tracker(cfg, "run"):
            raise RuntimeError("diverged")
    assert wandb.finished == 2
    assert str(tmp_path / "run") in caplog.text


def test_train_refuses_a_task_that_only_evaluates_and_finishes_the_tracker(monkeypatch, tmp_path):
    wandb = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    cfg = job_cfg(tmp_path / "run", task={"name": "syneval", "evaluates_checkpoint": True})
    with pytest.raises(ValueError, match=r"task=syneval evaluates a trained language model .* python eval.py task=syneval"):
        runner.train(cfg)
    assert wandb.finished == 1 and not (tmp_path / "run").exists()


def test_train_and_evaluate_run_their_work_as_a_job(monkeypatch, tmp_path, commit):
    """train.py's job is fit_and_test, eval.py's evaluate_checkpoint; each finished job writes done.json."""
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=None))
    monkeypatch.setattr(runner, "fit_and_test", Work({"val/acc": 0.5}))
    monkeypatch.setattr(runner, "evaluate_checkpoint", Work({"test/acc": 0.25}))
    task = {"name": "logic", "evaluates_checkpoint": None}
    assert runner.train(job_cfg(tmp_path / "train", task=task)) == {"val/acc": 0.5}
    assert runner.evaluate(job_cfg(tmp_path / "eval", task=task, train=None)) == {"test/acc": 0.25}
    assert run_folder.finished_metrics(tmp_path / "train") == {"val/acc": 0.5}
    assert run_folder.finished_metrics(tmp_path / "eval") == {"test/acc": 0.25}


# ----------------------------------------------------------------------------- what a job records and says
def test_a_finished_job_records_the_machine_it_ran_on(tmp_path, commit, monkeypatch):
    """done.json names where the metrics were computed (the report groups runs by it; break: write
    None for the machine)."""
    monkeypatch.setattr(runner, "machine", lambda: {"torch": "2.9.0", "device": "a hand-set CPU", "threads": "1"})
    runner.as_job(job_cfg(tmp_path / "run"), Work({"val/acc": 0.5}))
    record = json.loads((tmp_path / "run" / "done.json").read_text())
    assert record["machine"] == {"torch": "2.9.0", "device": "a hand-set CPU", "threads": "1"}


def test_the_refusals_say_what_to_do_in_full(tmp_path, commit):
    """The whole text of both refusals, the advice included (break: the second half of either
    message replaced or upper-cased)."""
    folder = tmp_path / "run"
    run_folder.checkpoints_dir(folder).mkdir(parents=True)
    run_folder.last_checkpoint_path(folder).write_bytes(b"")
    with pytest.raises(FileExistsError) as refused:
        runner.check_output_dir(job_cfg(folder))
    assert str(refused.value) == (
        f"{folder / 'checkpoints'} already holds checkpoints of another run; pick a new hydra.run.dir "
        "(the default is a fresh timestamped folder) or resume with ckpt_path=... from a new folder")

    unfinished = tmp_path / "lm"
    with pytest.raises(FileNotFoundError) as refused:
        runner.check_required_runs(job_cfg(tmp_path / "job", requires_finished_runs=[str(unfinished)]))
    assert str(refused.value) == (
        f"{unfinished} holds no finished run (done.json is missing): run (or resume) the job that trains it "
        "first, e.g. make evidence runs experiment=evidence_lm before experiment=evidence_parsing")


def test_resume_says_which_folder_it_skips_or_continues(tmp_path, commit, caplog):
    """What a resumed sweep prints for each job: the finished folder it skips, or the folder and the
    checkpoint it continues from (break: a message or one of its arguments dropped or changed)."""
    finished = tmp_path / "finished"
    run_folder.write_done(finished, {"val/acc": 0.9}, "abc", {}, 0.0)
    interrupted = tmp_path / "interrupted"
    run_folder.checkpoints_dir(interrupted).mkdir(parents=True)
    run_folder.last_checkpoint_path(interrupted).write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="onlstm.train"):
        runner.continue_where_stopped(job_cfg(finished, resume=True))
        runner.continue_where_stopped(job_cfg(interrupted, resume=True))
    assert caplog.messages == [
        f"{finished} already holds a finished run (done.json): skipped",
        f"continuing the interrupted run in {interrupted} from {interrupted / 'checkpoints' / 'last.ckpt'}",
    ]


@pytest.mark.parametrize("entry, what", [("train", "run"), ("evaluate", "evaluation")])
def test_a_failed_job_is_logged_as_a_run_or_an_evaluation_with_its_folder(monkeypatch, tmp_path, commit, caplog,
                                                                          entry, what):
    """train.py's failure is a "run", eval.py's an "evaluation" (break: the word dropped or changed)."""
    def failing(cfg):
        raise RuntimeError("diverged")

    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=None))
    monkeypatch.setattr(runner, "fit_and_test", failing)
    monkeypatch.setattr(runner, "evaluate_checkpoint", failing)
    cfg = job_cfg(tmp_path / "job", task={"name": "logic", "evaluates_checkpoint": None})
    with caplog.at_level(logging.ERROR, logger="onlstm.train"), pytest.raises(RuntimeError, match="diverged"):
        getattr(runner, entry)(cfg)
    assert caplog.messages == [f"{what} failed; output folder: {tmp_path / 'job'}"]


def test_the_wandb_offline_resolver_is_registered_under_its_name(monkeypatch):
    """conf/logger/wandb.yaml reads ${wandb_offline:}; register_resolvers makes it resolve to
    tracking.wandb_offline, read when the config is (break: register it under another name, or
    register something else)."""
    was_registered = OmegaConf.clear_resolver("wandb_offline")  # registered when train.py or eval.py is imported
    try:
        runner.register_resolvers()
        cfg = OmegaConf.create({"offline": "${wandb_offline:}"})
        monkeypatch.setenv("WANDB_MODE", "online")
        assert cfg.offline is False
        monkeypatch.setenv("WANDB_MODE", "offline")
        assert cfg.offline is True
    finally:
        if was_registered and not OmegaConf.has_resolver("wandb_offline"):
            OmegaConf.register_new_resolver("wandb_offline", runner.wandb_offline)

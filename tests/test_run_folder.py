"""One owner of the run-folder layout (:mod:`tasks.jobs.run_folder`): a folder built through it is
read back the same by every consumer (the runner's resume and requires_finished_runs, the evidence
report, the sweep summary, onlstm-parse, the logic figure), and the configs write where it says.

The layout's names are moved to other places first, so that a consumer that spells a path itself
instead of asking the module finds nothing and fails here."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tasks.jobs import run_folder, runner
from tasks.jobs.callbacks import LastCheckpoint
from tasks.jobs.tracking import log_table
from tasks.reports import logic_figure, parse_sentences, sweep_summary
from tasks.reports.runs import load_runs

MOVED = {"CONFIG": Path("hydra-files") / "composed.yaml", "OVERRIDES": Path("hydra-files") / "cli.yaml",
         "HYDRA": Path("hydra-files") / "hydra.yaml", "METRICS": Path("logs") / "all_metrics.csv",
         "DONE": "finished.json", "CHECKPOINTS": "ckpts", "LAST_CHECKPOINT": "latest.ckpt", "TABLES": "results"}


@pytest.fixture
def moved_layout(monkeypatch):
    for name, value in MOVED.items():
        monkeypatch.setattr(run_folder, name, value)


def build_job(folder: Path, seed: int, finished: bool) -> Path:
    """A logic job as train.py leaves it, every file placed through run_folder (what Hydra writes
    at the names run_folder gives; the rest through run_folder's own writers and the task's)."""
    for relative, content in ((run_folder.CONFIG, {"seed": seed, "model": {"arch": "onlstm"}, "lm_run": "/runs/lm",
                                                   "ckpt_path": "${lm_run}/lm.ckpt",
                                                   "task": {"name": "logic", "optimized_metric": "val/acc",
                                                            "monitor_mode": "max"}}),
                              (run_folder.OVERRIDES, [f"seed={seed}", "experiment=evidence_logic"]),
                              (run_folder.HYDRA, {"hydra": {"job": {"name": "train", "num": seed}}})):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(yaml.safe_dump(content))
    metrics = run_folder.metrics_path(folder)
    metrics.parent.mkdir(parents=True)
    metrics.write_text("step,val/acc,test/chosen_layer,time/cpu_minutes\n10,0.5,,4.0\n20,0.75,2,8.0\n")
    trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(folder), loggers=[], global_step=20)
    log_table(trainer, "test/acc_by_ops", ["ops", "examples", "accuracy", "majority"],
              [[0, 10, 1.0, 0.5], [1, 20, 0.75, 0.55]])
    run_folder.checkpoints_dir(folder).mkdir()
    run_folder.last_checkpoint_path(folder).write_bytes(b"")
    if finished:
        run_folder.write_done(folder, {"val/acc": 0.75, "test/acc_ops1": 0.75}, "abc123",
                              {"device": "CPU", "torch": "2", "threads": "1"}, started=0.0)
    return folder


def test_a_folder_built_through_the_layout_reads_back_through_every_consumer(moved_layout, tmp_path):
    sweep = tmp_path / "sweep"
    done, stopped = build_job(sweep / "job0", 0, True), build_job(sweep / "job1", 1, False)
    assert not (done / "done.json").exists() and (done / "finished.json").is_file()  # the moved names are used

    # the runner: a finished job is skipped with its metrics, an interrupted one continues from its last checkpoint
    for folder, expected in ((done, {"val/acc": 0.75, "test/acc_ops1": 0.75}), (stopped, None)):
        cfg = OmegaConf.create({"paths": {"output_dir": str(folder)}, "train": True, "ckpt_path": None})
        assert runner.continue_where_stopped(cfg) == expected
    assert cfg.ckpt_path == str(stopped / "ckpts" / "latest.ckpt")
    runner.check_required_runs(OmegaConf.create({"requires_finished_runs": [str(done)]}))
    with pytest.raises(FileNotFoundError, match="finished.json is missing"):
        runner.check_required_runs(OmegaConf.create({"requires_finished_runs": [str(stopped)]}))

    # the evidence report
    first, second = load_runs([sweep])
    assert (first.folder, first.seed, first.entry, first.finished, second.finished) == (done, 0, "train", True, False)
    assert first.metrics == {"val/acc": 0.75, "test/acc_ops1": 0.75} and first.record["commit"] == "abc123"
    assert first.sweep_command == "python train.py -m experiment=evidence_logic"
    assert first.curve("time/cpu_minutes", "val/acc") == [(4.0, 0.5), (8.0, 0.75)]
    assert [row["accuracy"] for row in first.table("test/acc_by_ops")] == ["1.0", "0.75"]

    # the sweep summary
    sweep_summary.summarize(sweep)
    rows = list(csv.DictReader(open(sweep / sweep_summary.SUMMARY_CSV)))
    assert [(r["job"], r["status"], r["value"], r["commit"]) for r in rows] == [
        ("0", "finished", "0.75", "abc123"), ("1", "unfinished", "", "")]

    # onlstm-parse --layer-from: the chosen layer, and the checkpoint the run parsed (interpolation resolved)
    warnings: list[str] = []
    args = argparse.Namespace(layer=None, layer_from=str(done), checkpoint="/elsewhere/other.ckpt")
    assert parse_sentences.choose_layer(args, 3, warnings.append) == (2, f"chosen on development trees by {done}")
    assert warnings == ["the layer was chosen for /runs/lm/lm.ckpt, and is applied to /elsewhere/other.ckpt"]

    # the logic figure
    assert [r["accuracy"] for r in logic_figure.read_accuracy_table(done)] == [1.0, 0.75]
    assert logic_figure.run_label(done) == "ON-LSTM"


def test_checkpoints_are_named_by_the_layout(moved_layout, tmp_path):
    folder = tmp_path / "run"
    assert LastCheckpoint(str(run_folder.checkpoints_dir(folder))).path == run_folder.last_checkpoint_path(folder)
    assert run_folder.cpu_mark_checkpoint_name(40) == "best_cpu040min.ckpt"  # what evidence2_* configs name


def test_a_damaged_done_marker_is_named(tmp_path):
    run_folder.done_path(tmp_path).write_text("{truncated")
    with pytest.raises(ValueError, match=r"done.json: not a run record .* delete it to run this job again"):
        run_folder.finished_metrics(tmp_path)
    with pytest.raises(json.JSONDecodeError):
        run_folder.read_done(tmp_path)


def test_the_configs_write_where_the_layout_says(make_cfg, tmp_path):
    """Hydra's files, the CSV log, the checkpoints and the job log land at the names the run-folder
    module reads them from (break: `name: metrics` in conf/logger/csv.yaml)."""
    cfg = make_cfg([])
    out = Path(cfg.paths.output_dir)
    assert Path(cfg.hydra.output_subdir) == run_folder.CONFIG.parent == run_folder.OVERRIDES.parent
    logger = instantiate(cfg.logger.csv)
    assert Path(logger.experiment.metrics_file_path) == run_folder.metrics_path(out)
    for name in ("model_checkpoint", "last_checkpoint"):
        assert Path(cfg.callbacks[name].dirpath) == run_folder.checkpoints_dir(out)
    # the evidence sweeps keep the best checkpoint and the initial weights under the layout's names,
    # and the parsing sweep reads them there
    lm = make_cfg(["experiment=evidence_lm"], subdir="lm")
    best = lm.callbacks.model_checkpoint
    assert Path(best.dirpath) / f"{best.filename}.ckpt" == run_folder.checkpoints_dir(lm.paths.output_dir) / \
        run_folder.BEST_CHECKPOINT
    assert instantiate(lm.callbacks.initial_weights).path == run_folder.checkpoints_dir(lm.paths.output_dir) / \
        run_folder.INITIAL_CHECKPOINT
    parsing = make_cfg(["experiment=evidence_parsing"], subdir="parsing", config_name="eval")
    assert Path(parsing.ckpt_path) == run_folder.checkpoints_dir(parsing.lm_run) / run_folder.BEST_CHECKPOINT
    # Hydra resolves the log's name when the job runs: the pattern, filled in as Hydra fills it
    pattern = OmegaConf.to_container(cfg.hydra.job_logging, resolve=False)["handlers"]["file"]["filename"]
    for job in ("train", "eval"):
        filled = pattern.replace("${hydra.runtime.output_dir}", str(out)).replace("${hydra.job.name}", job)
        assert Path(filled) == run_folder.log_path(out, job)


# ------------------------------------------------------------------ records kept where checkpoints cannot go
def test_a_record_keeps_what_the_report_reads_and_leaves_checkpoints_behind(moved_layout, tmp_path):
    from tasks.reports import archive

    sweeps = tmp_path / "logs"
    finished = build_job(sweeps / "logic" / "onlstm_seed1", 1, finished=True)
    build_job(sweeps / "logic" / "onlstm_seed2", 2, finished=False)
    (run_folder.checkpoints_dir(finished)).mkdir(parents=True, exist_ok=True)
    run_folder.last_checkpoint_path(finished).write_bytes(b"weights")
    copied = archive.archive(sweeps, tmp_path / "kept")
    assert [p.name for p in copied] == ["onlstm_seed1", "onlstm_seed2"]
    kept = tmp_path / "kept" / "logic" / "onlstm_seed1"
    assert sorted(p.as_posix() for p in run_folder.record_files(kept)) == sorted(
        p.as_posix() for p in run_folder.record_files(finished))
    assert not run_folder.checkpoints_dir(kept).exists()
    # the report reads the kept copies as it reads the run folders
    original, copy = load_runs([sweeps / "logic"]), load_runs([tmp_path / "kept" / "logic"])
    assert [(r.seed, r.metrics, r.overrides, r.history) for r in original] == [
        (r.seed, r.metrics, r.overrides, r.history) for r in copy]


def test_a_finished_record_is_never_replaced_and_an_unfinished_one_is_refreshed(moved_layout, tmp_path):
    run = build_job(tmp_path / "logs" / "logic" / "onlstm_seed1", 1, finished=False)
    dest = tmp_path / "kept"
    assert run_folder.copy_record(run, dest)
    run_folder.write_done(run, {"val/acc": 0.9}, "abc", {}, 0.0)  # the run goes on and finishes
    assert run_folder.copy_record(run, dest) and run_folder.read_done(dest)["metrics"] == {"val/acc": 0.9}
    assert not run_folder.copy_record(run, dest)  # the same finished record again: nothing to do
    run_folder.write_done(run, {"val/acc": 0.5}, "def", {}, 0.0)  # another run under the same name
    with pytest.raises(run_folder.RecordConflict, match=rf"{dest} holds the finished record .* {run} differs"):
        run_folder.copy_record(run, dest)
    assert run_folder.read_done(dest)["metrics"] == {"val/acc": 0.9}


def test_archiving_a_folder_without_sweeps_names_it(tmp_path):
    from tasks.reports import archive

    with pytest.raises(FileNotFoundError, match="no such folder of sweeps"):
        archive.archive(tmp_path / "missing", tmp_path / "kept")
    (tmp_path / "empty" / "sweep").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no sweep of run folders"):
        archive.archive(tmp_path / "empty", tmp_path / "kept")

def write_training_run(folder: Path, mode: str, rows: str, checkpoints: list[str], test: bool = True) -> Path:
    """A training run's config (the checkpoint callback's keys as conf/callbacks/default.yaml spells
    them, interpolations included), CSV log and checkpoint files, at the layout's names."""
    config = {"train": True, "test": test,
              "task": {"optimized_metric": "val/acc" if mode == "max" else "val/ppl", "monitor_mode": mode},
              "callbacks": {"model_checkpoint": {"filename": "epoch_{epoch:03d}", "monitor": "${task.optimized_metric}",
                                                 "mode": "${task.monitor_mode}"}}}
    (folder / run_folder.CONFIG).parent.mkdir(parents=True)
    (folder / run_folder.CONFIG).write_text(yaml.safe_dump(config))
    run_folder.metrics_path(folder).parent.mkdir(parents=True)
    run_folder.metrics_path(folder).write_text(rows)
    run_folder.checkpoints_dir(folder).mkdir()
    for name in checkpoints:
        (run_folder.checkpoints_dir(folder) / name).write_bytes(b"")
    return folder


def test_the_best_checkpoint_its_validation_and_what_the_run_tested(tmp_path):
    """The best checkpoint is the callback's file (not last, initial or a CPU mark); its validation is
    the first row with the best monitored value, not the last row (break: take the last row, or max
    for mode min)."""
    rows = ("epoch,step,train/loss,val/loss,val/ppl,val/ppl_best\n0,9,,5.0,150.0,150.0\n0,9,5.5,,,\n"
            "1,19,,4.9,134.3,134.3\n2,29,,4.8,134.3,134.3\n3,39,,5.1,164.0,134.3\n")
    run = write_training_run(tmp_path / "run", "min", rows, ["epoch_001.ckpt", "last.ckpt", "initial.ckpt",
                                                             "best_cpu040min.ckpt"])
    best = run_folder.checkpoints_dir(run) / "epoch_001.ckpt"
    assert run_folder.best_checkpoint_file(run) == best == run_folder.tested_checkpoint(run)
    assert run_folder.best_validation(run) == {"val/loss": 4.9, "val/ppl": 134.3}
    assert run_folder.run_of_checkpoint(best) == run.resolve()
    assert run_folder.run_of_checkpoint(tmp_path / "elsewhere.ckpt") is None

    rows = "epoch,step,val/acc,val/acc_best\n0,9,0.7,0.7\n1,19,0.9,0.9\n2,29,0.8,0.9\n"
    untested = write_training_run(tmp_path / "untested", "max", rows, ["epoch_001.ckpt", "epoch_002.ckpt"], test=False)
    assert run_folder.best_validation(untested) == {"val/acc": 0.9}
    assert run_folder.best_checkpoint_file(untested) is None  # two candidates: none is known to be the best
    assert run_folder.tested_checkpoint(untested) is None

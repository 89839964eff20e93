"""Resumable runs and sweeps (``resume=true``, :mod:`tasks.jobs.runner`): what ``make evidence`` relies
on when the machine is reclaimed mid-sweep and the same command is run again."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval import evaluate
from tasks.jobs import provenance, run_folder
from onlstm.checkpoints import read_checkpoint
from tests.helpers import LM_TINY_RUN, ROOT, cli_env, compose_config, logged_metrics, requires_data, run_train

# experiment=evidence_lm as a seconds-long sweep of one ON-LSTM job: a fixed number of steps
# instead of the CPU-time budget (which would stop two attempts at different steps)
TINY_SWEEP = [
    "-m", "experiment=evidence_lm", *LM_TINY_RUN[:-3], "task.datamodule.train_fraction=0.05",
    "hydra.sweeper.params.seed=7", "hydra.sweeper.params.model=onlstm", "~callbacks.cpu_time_budget",
    "++trainer.max_steps=60", "trainer.max_epochs=10", "callbacks.last_checkpoint.every_n_train_steps=20",
    "trainer.val_check_interval=20", "+trainer.limit_val_batches=4", "+trainer.limit_test_batches=4",
    "trainer.num_sanity_val_steps=0",
]


def logged_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(handle)]


def sweep_args(folder: Path) -> list[str]:
    return [*TINY_SWEEP, f"hydra.sweep.dir={folder}"]


@requires_data("ptb/train.txt", "ptb/valid.txt", "ptb/test.txt")
def test_interrupted_sweep_continues_and_a_finished_one_is_skipped(tmp_path):
    """Guards make evidence's resume: a sweep killed mid-run (SIGKILL, as when a machine is
    reclaimed), started again, continues its job from last.ckpt in the same folder and ends with
    the metrics of an uninterrupted sweep; the rows logged before the kill are kept; a third start
    finds done.json and trains nothing."""
    reference = tmp_path / "reference"
    run_train(sweep_args(reference))
    expected = json.loads((reference / "onlstm_seed7" / run_folder.DONE).read_text())["metrics"]

    sweep = tmp_path / "sweep"
    job = sweep / "onlstm_seed7"
    proc = subprocess.Popen([sys.executable, "train.py", *sweep_args(sweep)], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (job / "checkpoints" / "last.ckpt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its joblib workers
    proc.wait()
    assert (job / "checkpoints" / "last.ckpt").is_file() and not (job / run_folder.DONE).exists()
    rows_before = logged_rows(job)

    run_train(sweep_args(sweep))
    assert "continuing the interrupted run" in (job / "train.log").read_text()
    metrics = json.loads((job / run_folder.DONE).read_text())["metrics"]
    for key in ("val/ppl", "val/ppl_best", "test/ppl", "train/loss_step"):  # (the epoch mean covers this attempt)
        assert metrics[key] == expected[key], key
    rows_after = logged_rows(job)
    assert rows_before and rows_after[: len(rows_before)] == rows_before  # the first attempt's rows are kept
    assert len(rows_after) > len(rows_before)
    assert logged_metrics(job)["test/ppl"] == pytest.approx(expected["test/ppl"])

    stamp = (job / run_folder.DONE).stat().st_mtime_ns
    checkpoint_stamp = (job / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    run_train(sweep_args(sweep))
    assert (job / run_folder.DONE).stat().st_mtime_ns == stamp
    assert (job / "checkpoints" / "last.ckpt").stat().st_mtime_ns == checkpoint_stamp  # nothing trained
    assert "already holds a finished run (done.json): skipped" in (job / "train.log").read_text()


def test_done_record_names_commit_machine_and_metrics(tmp_path):
    path = run_folder.write_done(tmp_path, {"val/ppl": 12.5}, "abc123", provenance.machine(), time.time() - 3)
    record = json.loads(path.read_text())
    assert record["metrics"] == {"val/ppl": 12.5} and record["commit"] == "abc123"
    assert record["machine"]["torch"] and record["machine"]["device"] and record["wall_seconds_last_attempt"] >= 3
    assert run_folder.finished_metrics(tmp_path) == {"val/ppl": 12.5}
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, then renamed
    path.write_text("{truncated")
    with pytest.raises(ValueError, match=rf"{path}: not a run record .* delete it to run this job again"):
        run_folder.finished_metrics(tmp_path)
    assert run_folder.finished_metrics(tmp_path / "nothing") is None


def git_repo(folder: Path) -> str:
    """A git checkout at ``folder`` with one commit; its short commit."""
    folder.mkdir(parents=True)
    (folder / "file.txt").write_text("one\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q"], ["add", "file.txt"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", "-C", str(folder), *args], check=True, env=env, capture_output=True)
    return subprocess.run(["git", "-C", str(folder), "log", "-1", "--format=%h", "--abbrev=12"],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_code_commit_reads_the_top_of_a_checkout_only(tmp_path):
    """The commit of a checkout, +dirty once a tracked file changes; a folder inside some other
    checkout (an installed package under a project's .venv) is "unknown", not that project's commit."""
    repo = tmp_path / "repo"
    commit = git_repo(repo)
    assert provenance.code_commit(repo) == commit
    (repo / "file.txt").write_text("two\n")
    assert provenance.code_commit(repo) == commit + "+dirty"
    (repo / "lib" / "site-packages").mkdir(parents=True)
    assert provenance.code_commit(repo / "lib" / "site-packages") == "unknown"
    assert provenance.code_commit(tmp_path / "not-a-checkout") == "unknown"


@requires_data("ptb/train.txt", "ptb/valid.txt", "ptb/test.txt")
def test_a_run_records_the_commit_of_its_code_not_of_paths_root_dir(tmp_path):
    """PROJECT_ROOT (paths.root_dir) may point the run folders at another checkout; done.json
    still names the commit of the code that ran (break: read the commit at paths.root_dir)."""
    import train

    other = git_repo(tmp_path / "elsewhere")
    out = tmp_path / "run"
    train.train(compose_config([*LM_TINY_RUN, "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2",
                                "~logger", f"paths.root_dir={tmp_path / 'elsewhere'}"], out))
    recorded = json.loads((out / run_folder.DONE).read_text())["commit"]
    assert not recorded.startswith(other)
    top = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == ROOT:  # a checkout (CI's is; mutmut's copy is not)
        ours = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
        assert recorded.split("+")[0] == ours.stdout.strip()


def test_a_run_that_builds_on_an_unfinished_one_refuses_to_start(make_cfg, tmp_path):
    lm_run = tmp_path / "lm_run"
    (lm_run / "checkpoints").mkdir(parents=True)
    cfg = make_cfg(["task=parsing", f"ckpt_path={lm_run}/checkpoints/best.ckpt",
                    f"requires_finished_runs=[{lm_run}]"], config_name="eval")
    with pytest.raises(FileNotFoundError, match=rf"{lm_run} holds no finished run .*evidence_lm before"):
        evaluate(cfg)


@pytest.mark.slow
@requires_data("ptb/train.txt", "ptb/valid.txt", "ptb/test.txt")
def test_sigterm_to_an_evidence_sweep_leaves_a_last_ckpt_it_continues_from(tmp_path):
    """Guards a preempted ``make evidence``: SIGTERM to the whole process group (the launcher and
    its joblib worker, as a cluster or ``kill -TERM -<pgid>`` sends it) at step 30, between the
    step-based saves (every 20): the job writes last.ckpt at step 30 before it exits, and running
    the same command again continues from step 30 to the end (done.json). Went red (train.log
    without "SIGTERM received: saving") when LastCheckpoint passed the signal straight on to
    Lightning and saved nothing on it."""
    sweep = tmp_path / "sweep"
    job = sweep / "onlstm_seed7"
    marker = tmp_path / "waiting"
    wait = ["+callbacks.wait._target_=tests.fault_injection.WaitForSignalAtStep", "+callbacks.wait.step=30",
            f"+callbacks.wait.marker={marker}"]
    proc = subprocess.Popen([sys.executable, "train.py", *sweep_args(sweep), *wait], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the job never reached step 30"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    deadline = time.time() + 60  # the worker may outlive the launcher by the time it takes to save
    while "run stopped by SIGTERM" not in (job / "train.log").read_text() and time.time() < deadline:
        time.sleep(0.1)
    assert "SIGTERM received: saving" in (job / "train.log").read_text()
    assert read_checkpoint(job / "checkpoints" / "last.ckpt")["global_step"] == 30
    assert not (job / run_folder.DONE).exists()

    run_train(sweep_args(sweep))
    log = (job / "train.log").read_text()
    assert "continuing the interrupted run" in log and "training from step 30" in log
    assert json.loads((job / run_folder.DONE).read_text())["metrics"]["test/ppl"] > 1

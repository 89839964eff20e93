"""What a user reads in a run's train.log while it trains and evaluates (tasks.jobs.progress_log.ProgressLog)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import LM_TINY_RUN, LOGIC_TINY_RUN, requires_data, run_train


def _lines(run_dir: Path) -> list[str]:
    return [line.split(" - ", 1)[1] for line in (run_dir / "train.log").read_text().splitlines() if " - " in line]


@requires_data("ptb/train.txt", "ptb/valid.txt", "ptb/test.txt")
def test_training_writes_progress_validation_and_test_lines_to_train_log(tmp_path):
    """Guards `make train`'s log: every N steps a line with step, epoch and batch, loss and
    perplexity, learning rate, tokens/s and the ETA to the limit that will stop the run; after every
    validation its metrics; the test's rate and metrics. Went red (no `step 3 |` line: train.log
    held only the setup lines) with the progress_log callback removed from conf/callbacks/default.yaml."""
    run = tmp_path / "run"
    run_train([*LM_TINY_RUN, "+trainer.limit_train_batches=10", "+trainer.limit_val_batches=4",
               "+trainer.limit_test_batches=6", "+trainer.val_check_interval=5", "trainer.max_steps=10",
               "callbacks.progress_log.every_n_steps=3", "callbacks.progress_log.eval_every_seconds=0",
               f"hydra.run.dir={run}"])
    lines = _lines(run)
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split(" |")[0] for line in steps] == ["step 3", "step 6", "step 9"]
    pattern = (r"step 3 \| epoch 0 batch 3/10 \| loss (\d+\.\d+) \(ppl (\d+\.\d+)\) \| lr 30 \| [\d,]+ tokens/s \| "
               r"\S+ elapsed \| ETA \S+ \(max_steps=10\)")
    match = re.fullmatch(pattern, steps[0])
    assert match, steps[0]
    assert float(match[2]) > 1.0 and abs(float(match[2]) / 2.718281828 ** float(match[1]) - 1) < 1e-3
    validations = [line for line in lines if line.startswith("validation at step")]
    assert [v.split(" done")[0] for v in validations] == ["validation at step 5 (epoch 0)", "validation at step 10 (epoch 0)"]
    assert all(re.search(r"[\d,]+ tokens in \S+ \([\d,.]+ tokens/s\): val/loss [\d.]+, val/ppl [\d.]+", v) for v in validations)
    assert any(re.fullmatch(r"test: batch 3/6 \(50%\) \| [\d,.]+ tokens/s \| \S+ elapsed \| ETA \S+", line) for line in lines)
    assert any(re.match(r"test done: [\d,]+ tokens in \S+ \([\d,.]+ tokens/s\): test/loss [\d.]+, test/ppl [\d.]+", line)
               for line in lines)


@requires_data("logic/train0", "logic/test1")
def test_eta_names_the_cpu_time_budget_and_test_files_report_their_rate(tmp_path):
    """Guards the ETA of the evidence sweeps (stopped by callbacks.cpu_time_budget, not by
    max_epochs) and the rate/ETA lines of an evaluation over test files (logic, by operators).
    Went red when the budget was left out of the ETA's candidates (the line named max_epochs=1).
    max_epochs is far beyond the budget even on a busy machine, where the budget's ETA (CPU time
    left over CPU seconds per wall second) stretches."""
    run = tmp_path / "run"
    run_train([*LOGIC_TINY_RUN, "+callbacks.cpu_time_budget._target_=tasks.jobs.callbacks.CpuTimeBudget",
               "+callbacks.cpu_time_budget.minutes=0.02", "trainer.max_epochs=100000", "callbacks.progress_log.every_n_steps=1",
               "callbacks.progress_log.eval_every_seconds=0", f"hydra.run.dir={run}"])
    lines = _lines(run)
    first = next(line for line in lines if line.startswith("step 1 |"))
    assert re.search(r"[\d,]+ pairs/s \| .* ETA \S+ \(CPU-time budget: [\d.]+ of 0.02 min used\)$", first), first
    assert any(re.fullmatch(r"test: batch 1/\d+ \(\d+%\) \| [\d,.]+ pairs/s \| \S+ elapsed \| ETA \S+", line) for line in lines)
    assert any(line.startswith("test done: ") and "pairs/s" in line and "test/acc" in line for line in lines)

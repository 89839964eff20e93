"""The ListOps question in the evidence report: the rule that chose the CPU recipe (written before
its tuning runs: docs/listops.md), and the planned one-sided test on the expressions longer than
training. Synthetic run folders; expected numbers worked out by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.reports.evidence import Round2Inputs, provenance, write_report
from tasks.reports.questions.listops import chosen_setting, still_learning
from tasks.reports.runs import load_runs
from tests.helpers import committed_plan, fake_run

PLAN = """```yaml
plan: listops
entry: train
experiment: evidence2_listops
swept:
  seed: [1, 2, 3, 4, 5]
  model: [onlstm, lstm]
config:
  listops_cpu_size: small
  task.module.lr: 0.003
```
"""


def tuning_run(root: Path, arch: str, size: str, lr: float, best: float, curve=((20.0, None), (25.0, None))) -> None:
    history = [{"step": 100 * k, "time/cpu_minutes": t, "val/acc": best if v is None else v}
               for k, (t, v) in enumerate(curve, start=1)]
    fake_run(root / f"{arch}_{size}_lr{lr}", {"seed": 141, "listops_cpu_size": size, "model": {"arch": arch},
                                              "task": {"name": "listops", "module": {"lr": lr}}},
             {"val/acc_best": best}, history)


def test_the_rule_takes_the_best_mean_of_both_models_and_breaks_ties_small_first(tmp_path):
    tuning_run(tmp_path, "onlstm", "large", 0.001, 0.80)  # the best single run ...
    tuning_run(tmp_path, "lstm", "large", 0.001, 0.60)  # ... but a mean of 0.70
    tuning_run(tmp_path, "onlstm", "small", 0.003, 0.72)
    tuning_run(tmp_path, "lstm", "small", 0.003, 0.70)  # mean 0.71: chosen
    tuning_run(tmp_path, "onlstm", "large", 0.003, 0.71)
    tuning_run(tmp_path, "lstm", "large", 0.003, 0.71)  # mean 0.71 too: the tie goes to the small size
    tuning_run(tmp_path, "onlstm", "small", 0.001, 0.99)  # its LSTM has not finished: not a candidate
    chosen, means = chosen_setting(load_runs([tmp_path]))
    assert chosen == ("small", 0.003)
    assert means[("large", 0.001)] == pytest.approx(0.70) and ("small", 0.001) not in means


def test_a_run_still_learning_at_the_end_of_its_budget_is_seen(tmp_path):
    # the best validation accuracy up to 80% of 25 minutes (20) is 0.70, at the end 0.72: a rise of 0.02
    tuning_run(tmp_path, "onlstm", "small", 0.003, 0.72, ((10.0, 0.60), (20.0, 0.70), (22.0, 0.71), (25.0, 0.72)))
    assert still_learning(load_runs([tmp_path])[0]) == pytest.approx(0.02)


def evidence_run(sweep: Path, arch: str, seed: int, beyond: float, commit: str) -> None:
    metrics = {"val/acc_best": 0.70, "test/acc": 0.60, "test/acc_beyond_training": beyond,
               **{f"test/acc_{s}": 0.5 for s in ("released", "len200-300", "len500-600", "len900-1000")}}
    if arch == "onlstm":
        metrics.update({"test/tree_f1_released": 0.10, "test/tree_f1_best_binary_released": 0.24,
                        "test/tree_layer": 1})
    tables = {"test_acc_by_depth": [{"source": "released", "depth": d, "examples": 10, "accuracy": a, "majority": 0.2}
                                    for d, a in ((1, 0.9), (2, 0.6))]}
    fake_run(sweep / f"{arch}_seed{seed}", {"seed": seed, "listops_cpu_size": "small",
                                            "model": {"arch": arch}, "task": {"name": "listops", "module": {"lr": 0.003}},
                                            "callbacks": {"cpu_time_budget": {"minutes": 25}}},
             metrics, [{"step": 800, "time/cpu_minutes": 20.0, "val/acc": 0.68},
                       {"step": 900, "time/cpu_minutes": 25.0, "val/acc": 0.70}], tables,
             overrides=["experiment=evidence2_listops", f"seed={seed}", f"model={arch}"], commit=commit, entry="train")


def test_the_listops_question_is_decided_by_the_planned_one_sided_test(tmp_path):
    root = tmp_path / "repo"
    commit = committed_plan(root, PLAN)
    sweep, tuning = tmp_path / "listops", tmp_path / "tuning"
    # ON-LSTM 0.50 + d, LSTM 0.46 + d for d = -0.02, -0.01, 0, 0.01, 0.02: each sd 0.0158, the difference's
    # standard error 0.01, t = 0.04 / 0.01 = 4.00 at Welch's df 8: one-sided p = 0.002 (t tables: 0.00197)
    for seed, d in zip(range(1, 6), (-0.02, -0.01, 0.0, 0.01, 0.02)):
        evidence_run(sweep, "onlstm", seed, 0.50 + d, commit)
        evidence_run(sweep, "lstm", seed, 0.46 + d, commit)
    for arch in ("onlstm", "lstm"):
        tuning_run(tuning, arch, "small", 0.003, 0.70)
        tuning_run(tuning, arch, "large", 0.001, 0.60)
    inputs = Round2Inputs(root / "docs" / "preregistration.md", root)
    text = write_report([sweep], tmp_path / "out" / "evidence", "cmd", [tuning], inputs).read_text()
    assert (f"Question 3 (ListOps, primary, planned at {commit}): confirmed.** Accuracy on the test expressions "
            "longer than training") in text
    assert "ON-LSTM 0.500, LSTM 0.460 (n = 5 and 5; difference +0.040, standard error 0.010, t = 4.00, df 8.0, " \
           "one-sided p = 0.002)" in text
    assert "| released | 2 | 0.600 ± 0.000 (n=5) | 0.600 ± 0.000 (n=5) |" in text  # the depth table
    # each run's best validation, and how much it rose over the last fifth of its CPU time (still learning?)
    assert f"| ON-LSTM | 1 | yes | {commit} | 0.700 | 0.020 | 0.480 |" in text
    assert "| best binary tree (ceiling) | - | 24.0 ± 0.0 (n=5) |" in text
    assert ("The rule picks size small, learning rate 0.003 (mean best validation accuracy 0.700); rise over the "
            "last fifth of the budget ON-LSTM 0.000, LSTM 0.000: the evidence runs get 25 CPU-minutes. "
            "The evidence runs use it.") in text
    assert "Recipe selection" not in text  # ListOps tuning belongs to its question, not the generic section


CHECKPOINT_BY_ACC = {"callbacks": {"model_checkpoint": {"monitor": "val/acc", "mode": "max"}}}


def test_a_runs_best_validation_counts_the_validations_before_a_resume(tmp_path):
    """Runs of the code before running bests were kept in checkpoints logged, after a resume, the
    best of the validations since the resume (listops onlstm_seed4 of round 2: 0.6225, where its
    best validation, before the stop, was 0.629, the checkpoint it tested)."""
    history = [{"step": 13125, "val/acc": 0.629, "val/acc_best": 0.629},
               {"step": 15000, "val/acc": 0.6195, "val/acc_best": 0.6195},  # the first validation after the resume
               {"step": 16875, "val/acc": 0.6225, "val/acc_best": 0.6225}]
    fake_run(tmp_path / "acc", {"seed": 4, "model": {"arch": "onlstm"},
                                "task": {"name": "listops", "optimized_metric": "val/acc", "monitor_mode": "max"}, **CHECKPOINT_BY_ACC},
             {"val/acc_best": 0.6225, "test/acc": 0.59}, history)
    # perplexity: the lowest is the best
    fake_run(tmp_path / "ppl", {"seed": 1, "model": {"arch": "onlstm"},
                                "task": {"name": "lm", "optimized_metric": "val/ppl", "monitor_mode": "min"},
                                "callbacks": {"model_checkpoint": {"monitor": "val/loss", "mode": "min"}}},
             {"val/ppl_best": 130.0}, [{"step": 1, "val/ppl": 120.0, "val/loss": 4.787}, {"step": 2, "val/ppl": 130.0, "val/loss": 4.868}])
    acc, ppl = sorted(load_runs([tmp_path]), key=lambda run: run.folder.name)
    assert acc.metrics["val/acc_best"] == pytest.approx(0.629) and acc.metrics["test/acc"] == pytest.approx(0.59)
    assert ppl.metrics["val/ppl_best"] == pytest.approx(120.0)
    assert acc.best_restarted and ppl.best_restarted
    fake_run(tmp_path / "kept", {"seed": 2, "model": {"arch": "lstm"},
                                 "task": {"name": "listops", "optimized_metric": "val/acc", "monitor_mode": "max"}, **CHECKPOINT_BY_ACC},
             {"val/acc_best": 0.629}, history)
    runs = load_runs([tmp_path])
    assert not next(r for r in runs if r.folder.name == "kept").best_restarted
    named = next(line for line in provenance(runs) if line.startswith("Best validation of"))
    assert named.startswith(f"Best validation of {tmp_path.name}/acc, {tmp_path.name}/ppl: the best of every validation")
